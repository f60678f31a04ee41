"""Known answers recorded from libsignal 0.90.0: sealed sender (``libsignal-sealed-sender.json``).

The envelopes are v1, except the last: a v2 message as the server cuts it for Bob. kurir plays
Bob with the recorded keys: it must unseal libsignal's envelopes to the recorded content byte
for byte, validate the recorded certificate chain at the recorded time, decrypt the 1:1
messages through `sealed_sender_decrypt` and the group messages through ``group_decrypt``.
No Node.js needed.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey
from kurir.crypto.errors import InvalidMessageError, InvalidSealedSenderError
from kurir.crypto.kem import KemKeyPair, KemPublicKey, KemSecretKey
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    KyberPreKeyRecord,
    PreKeyId,
    PreKeyRecord,
    SignedPreKeyId,
    SignedPreKeyRecord,
)
from kurir.crypto.sealed_sender import (
    SealedSenderDecryptionResult,
    sealed_sender_decrypt,
    sealed_sender_decrypt_to_usmc,
    sealed_sender_open,
)
from kurir.crypto.sender_certificate import SenderCertificate, ServerCertificate
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    group_decrypt,
    process_sender_key_distribution_message,
)
from kurir.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

VECTORS = json.loads((Path(__file__).parent / "libsignal-sealed-sender.json").read_text())
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VALIDATION_TIME = EPOCH + timedelta(milliseconds=VECTORS["validation_time"])
TRUST_ROOT = PublicKey.deserialize(bytes.fromhex(VECTORS["trust_root_public"]))
MESSAGES: list[dict[str, Any]] = VECTORS["messages"]
ONE_TO_ONE = [m for m in MESSAGES if m["msg_type"] == 3]
GROUP = [m for m in MESSAGES if m["msg_type"] == 7]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


class Bob:
    """Bob's stores rebuilt from the recorded keys."""

    def __init__(self) -> None:
        bob = VECTORS["bob"]
        private = PrivateKey.deserialize(h(bob["identity_private"]))
        self.identity = IdentityKeyPair(private.public_key(), private)
        self.address = ProtocolAddress(bob["address"], DeviceId(bob["device_id"]))
        self.identity_store = InMemoryIdentityKeyStore(self.identity, bob["registration_id"])
        self.pre_keys = InMemoryPreKeyStore()
        self.signed = InMemorySignedPreKeyStore()
        self.kyber = InMemoryKyberPreKeyStore()
        self.sessions = InMemorySessionStore()
        prekey_id = PreKeyId(bob["prekey_id"])
        one_time = KeyPair.from_private_key(PrivateKey.deserialize(h(bob["prekey_private"])))
        self.pre_keys.save_pre_key(prekey_id, PreKeyRecord(prekey_id, one_time))
        signed_id = SignedPreKeyId(bob["signed_prekey_id"])
        signed = KeyPair.from_private_key(PrivateKey.deserialize(h(bob["signed_prekey_private"])))
        self.signed.save_signed_pre_key(
            signed_id,
            SignedPreKeyRecord(
                signed_id,
                bob["signed_prekey_timestamp"],
                signed,
                h(bob["signed_prekey_signature"]),
            ),
        )
        kyber_id = KyberPreKeyId(bob["kyber_prekey_id"])
        kem = KemKeyPair(
            KemPublicKey.deserialize(h(bob["kyber_prekey_public"])),
            KemSecretKey.deserialize(h(bob["kyber_prekey_secret"])),
        )
        self.kyber.save_kyber_pre_key(
            kyber_id,
            KyberPreKeyRecord(
                kyber_id, bob["kyber_prekey_timestamp"], kem, h(bob["kyber_prekey_signature"])
            ),
            last_resort=False,
        )

    def decrypt(
        self, sealed: bytes, *, now: datetime = VALIDATION_TIME
    ) -> SealedSenderDecryptionResult:
        return sealed_sender_decrypt(
            sealed,
            trust_roots=[TRUST_ROOT],
            now=now,
            local_uuid=self.address.name,
            local_device_id=self.address.device_id,
            identity_store=self.identity_store,
            session_store=self.sessions,
            pre_key_store=self.pre_keys,
            signed_pre_key_store=self.signed,
            kyber_pre_key_store=self.kyber,
            rng=random.Random(3).randbytes,
        )


def test_certificate_chain_matches_the_recording() -> None:
    server = ServerCertificate.deserialize(h(VECTORS["server_certificate"]))
    assert server.key_id == VECTORS["server_key_id"]
    assert server.key.serialize() == h(VECTORS["server_public"])
    assert server.validate(TRUST_ROOT)
    certificate = SenderCertificate.deserialize(h(VECTORS["sender_certificate"]))
    sender = VECTORS["sender"]
    assert certificate.sender_uuid == sender["address"]
    assert certificate.sender_e164 == sender["e164"]
    assert certificate.sender_device_id == sender["device_id"]
    assert certificate.key.serialize() == h(sender["identity_public"])
    assert certificate.expiration == VECTORS["certificate_expiration"]
    assert certificate.signer == server
    assert certificate.validate(TRUST_ROOT, VALIDATION_TIME)
    assert certificate.validate(TRUST_ROOT, certificate.expires_at)
    assert not certificate.validate(TRUST_ROOT, certificate.expires_at + timedelta(milliseconds=1))


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m["kind"][:5] + m["plaintext"][-4:])
def test_unseal_gives_the_recorded_content(message: dict[str, Any]) -> None:
    bob = Bob()
    usmc = sealed_sender_decrypt_to_usmc(h(message["sealed"]), bob.identity)
    assert usmc.serialized == h(message["usmc"])
    assert usmc.msg_type == message["msg_type"]
    assert usmc.contents == h(message["contents"])
    assert usmc.content_hint == message["content_hint"]
    assert usmc.group_id == (None if message["group_id"] is None else h(message["group_id"]))
    assert usmc.sender.serialized == h(VECTORS["sender_certificate"])


def test_one_to_one_messages_decrypt_with_the_session() -> None:
    bob = Bob()
    sender = VECTORS["sender"]
    for message in ONE_TO_ONE:
        result = bob.decrypt(h(message["sealed"]))
        assert result.message == h(message["plaintext"])
        assert result.sender == ProtocolAddress(sender["address"], DeviceId(sender["device_id"]))
        assert result.sender_e164 == sender["e164"]
    assert bob.pre_keys.get_pre_key(PreKeyId(VECTORS["bob"]["prekey_id"])) is None


def test_expired_certificate_is_rejected_before_the_session_is_touched() -> None:
    bob = Bob()
    late = EPOCH + timedelta(milliseconds=VECTORS["certificate_expiration"] + 1)
    with pytest.raises(InvalidSealedSenderError, match="expired"):
        bob.decrypt(h(ONE_TO_ONE[0]["sealed"]), now=late)
    assert (
        bob.sessions.load_session(ProtocolAddress(VECTORS["sender"]["address"], DeviceId(1)))
        is None
    )
    assert bob.decrypt(h(ONE_TO_ONE[0]["sealed"])).message == h(ONE_TO_ONE[0]["plaintext"])


def test_group_messages_open_and_decrypt() -> None:
    bob = Bob()
    store = InMemorySenderKeyStore()
    skdm = SenderKeyDistributionMessage.deserialize(h(VECTORS["sender_key_distribution"]))
    assert skdm.distribution_id == uuid.UUID(VECTORS["distribution_id"])
    assert [m["sealed"][:2] for m in GROUP] == ["11", "22"]  # one v1, one v2
    for message in GROUP:
        usmc = sealed_sender_open(
            h(message["sealed"]),
            bob.identity,
            trust_roots=[TRUST_ROOT],
            now=VALIDATION_TIME,
            local_uuid=bob.address.name,
            local_device_id=bob.address.device_id,
        )
        sender = usmc.sender.sender_address
        if store.load_sender_key(sender, skdm.distribution_id) is None:
            process_sender_key_distribution_message(sender, skdm, store)
        assert group_decrypt(usmc.contents, store, sender) == h(message["plaintext"])


def test_tampered_v2_message_is_rejected() -> None:
    bob = Bob()
    body = h(GROUP[-1]["sealed"])
    for index in (1, 40, 60, len(body) - 1):
        forged = bytearray(body)
        forged[index] ^= 0x01
        with pytest.raises(InvalidSealedSenderError):
            sealed_sender_decrypt_to_usmc(bytes(forged), bob.identity)
    with pytest.raises(InvalidSealedSenderError):
        sealed_sender_decrypt_to_usmc(body[:79], bob.identity)
    with pytest.raises(InvalidSealedSenderError):
        sealed_sender_decrypt_to_usmc(body, KeyPair.generate(random.Random(1).randbytes))


def test_sealed_group_message_is_refused_by_the_one_to_one_path() -> None:
    bob = Bob()
    with pytest.raises(InvalidMessageError, match="unexpected message type"):
        bob.decrypt(h(GROUP[0]["sealed"]))
