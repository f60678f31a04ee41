"""The session state machine with kurir on one side and libsignal 0.90.0 on the other.

Owns: `LibsignalPeer` (a participant held by the interop harness, behind the machine's `Peer`
Protocol, with libsignal's errors translated into kurir's) and the kurir-libsignal machines. The
rules and the model are `session_model`'s: sessions started from either side's bundle (kurir's
bundles carry Kyber1024 prekeys, the only KEM libsignal accepts), simultaneous initiation,
reordering, loss, duplicates and tampering, with the same predictions for both libraries: they
keep the same limits (five receiving chains, forty archived sessions). Snapshot, restore and
restart apply to the kurir participants only (the harness cannot load a record back).

Two machines: Alice on kurir and Bob on libsignal; and three devices where Bob's device 1 is
libsignal and his device 2 kurir, with the same identity key, so that the two libraries also hold
sessions of an identity with itself (no forward-jump limit there).

The harness is `tests/interop/harness` (see docs/interop.md). Without Node.js or its
``node_modules`` the test is skipped with the reason; when ``CI`` is set it fails instead, as the
interop suite does.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import run_state_machine_as_test
from session_model import Kem, Peer, SessionMachine

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import PublicKey, Rng
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    NoSessionError,
    UntrustedIdentityError,
)
from kurir.crypto.kem import KemPublicKey
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    PreKeyBundle,
    PreKeyId,
    SignedPreKeyId,
)
from kurir.crypto.session import SessionRecord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
driver = importlib.import_module("libsignal")  # the interop harness's Python driver


def _translate(error: Any) -> Exception:
    """kurir's error for a libsignal error (codes compared by name, as docs/interop.md says)."""
    code, message = str(error.code), str(error.message)
    event(f"libsignal error: {code}")
    if code == "DuplicatedMessage":
        return DuplicateMessageError(message)
    if code in ("SessionNotFound", "NoSession") or (
        code == "Generic" and message.startswith("session with") and "not found" in message
    ):
        return NoSessionError(message)  # 0.90.0 reports a missing session as Generic
    if code == "UntrustedIdentity":
        return UntrustedIdentityError(message)
    return InvalidMessageError(f"{code}: {message}")


class LibsignalPeer:
    """A libsignal participant in the harness, seen through the machine's `Peer` Protocol."""

    def __init__(
        self,
        ls: Any,
        address: ProtocolAddress,
        identity: IdentityKeyPair,
        registration_id: int,
    ) -> None:
        self.ls = ls
        self.address = address
        self.name = f"{address.name}.{address.device_id}"
        self.others: list[ProtocolAddress] = []
        ls.create_participant(
            self.name,
            address=address.name,
            device_id=address.device_id,
            registration_id=registration_id,
            identity_private=identity.private_key.serialize(),
        )

    def bundle(self, *, one_time: bool, kem: Kem) -> PreKeyBundle:
        """A fresh libsignal bundle (always a one-time Kyber1024 prekey), as kurir reads it."""
        b = self.ls.generate_prekeys(self.name, one_time=one_time).bundle
        return PreKeyBundle(
            registration_id=b.registration_id,
            device_id=DeviceId(b.device_id),
            pre_key_id=None if b.prekey_id is None else PreKeyId(b.prekey_id),
            pre_key=None if b.prekey_public is None else PublicKey.deserialize(b.prekey_public),
            signed_pre_key_id=SignedPreKeyId(b.signed_prekey_id),
            signed_pre_key=PublicKey.deserialize(b.signed_prekey_public),
            signed_pre_key_signature=b.signed_prekey_signature,
            identity_key=PublicKey.deserialize(b.identity_key),
            kyber_pre_key_id=KyberPreKeyId(b.kyber_prekey_id),
            kyber_pre_key=KemPublicKey.deserialize(b.kyber_prekey_public),
            kyber_pre_key_signature=b.kyber_prekey_signature,
        )

    def start(self, peer: Peer, *, one_time: bool, kem: Kem) -> bytes:
        bundle = peer.bundle(one_time=one_time, kem=Kem.KYBER1024)
        self.ls.process_bundle(
            self.name,
            peer.address.name,
            driver.PreKeyBundle(
                registration_id=bundle.registration_id,
                device_id=bundle.device_id,
                identity_key=bundle.identity_key.serialize(),
                signed_prekey_id=bundle.signed_pre_key_id,
                signed_prekey_public=bundle.signed_pre_key.serialize(),
                signed_prekey_signature=bundle.signed_pre_key_signature,
                kyber_prekey_id=bundle.kyber_pre_key_id,
                kyber_prekey_public=bundle.kem_pre_key.serialize(),
                kyber_prekey_signature=bundle.kyber_pre_key_signature,
                prekey_id=bundle.pre_key_id,
                prekey_public=None if bundle.pre_key is None else bundle.pre_key.serialize(),
            ),
        )
        return self.current_session(peer)

    def current_session(self, peer: Peer) -> bytes:
        data = self.ls.session_record(self.name, peer.address.name, device=peer.address.device_id)
        assert data is not None
        record = SessionRecord.deserialize(data)  # libsignal's storage format is kurir's
        assert record.current is not None
        return record.current.alice_base_key

    def encrypt(self, peer: Peer, plaintext: bytes) -> tuple[int, bytes]:
        try:
            message = self.ls.encrypt(
                self.name, peer.address.name, plaintext, device=peer.address.device_id
            )
        except driver.LibsignalError as error:
            raise _translate(error) from error
        return int(message.type), bytes(message.body)

    def decrypt(self, peer: Peer, kind: int, body: bytes) -> bytes:
        try:
            return bytes(
                self.ls.decrypt(
                    self.name,
                    peer.address.name,
                    driver.Ciphertext(driver.CiphertextType(kind), body),
                    device=peer.address.device_id,
                )
            )
        except driver.LibsignalError as error:
            raise _translate(error) from error

    def dump(self) -> object:
        return tuple(
            (
                self.ls.session_record(self.name, other.name, device=other.device_id),
                self.ls.saved_identity(self.name, other.name, device=other.device_id),
            )
            for other in self.others
        )


class KurirAndLibsignal(SessionMachine):
    """Alice on kurir, Bob on libsignal."""

    DEVICES: tuple[tuple[str, int, str], ...] = (("alice", 1, "alice"), ("bob", 1, "bob"))
    LIBSIGNAL: ClassVar[tuple[int, ...]] = (1,)
    """Which of `DEVICES` libsignal plays."""
    LS: ClassVar[Any] = None

    def __init__(self) -> None:
        super().__init__()
        self.LS.reset()

    def make_peer(
        self, index: int, address: ProtocolAddress, identity: IdentityKeyPair, rng: Rng
    ) -> Peer:
        if index not in self.LIBSIGNAL:
            return super().make_peer(index, address, identity, rng)
        peer = LibsignalPeer(self.LS, address, identity, 1000 + index)
        peer.others = [
            ProtocolAddress(name, DeviceId(device))
            for other, (name, device, _) in enumerate(self.DEVICES)
            if other != index
        ]
        return peer


class MixedDevices(KurirAndLibsignal):
    """Alice on kurir; Bob's device 1 on libsignal and his device 2 on kurir, sharing Bob's
    identity key: the two libraries also hold a session of an identity with itself."""

    DEVICES = (("alice", 1, "alice"), ("bob", 1, "bob"), ("bob", 2, "bob"))


@pytest.fixture(scope="module")
def harness() -> Iterator[Any]:
    reason = driver.unavailable_reason()
    if reason is not None:
        message = f"libsignal interop harness unavailable: {reason}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    with driver.Libsignal() as ls:
        yield ls


@pytest.mark.parametrize("machine", [KurirAndLibsignal, MixedDevices])
def test_kurir_and_libsignal(harness: Any, machine: type[KurirAndLibsignal]) -> None:
    machine.LS = harness
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
