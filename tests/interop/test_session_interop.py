"""Live 1:1 sessions between kurir and libsignal 0.90.0 (through the interop harness).

Each behaviour runs from both sides: sessions started from either side's bundle, several DH
ratchet steps, out-of-order and duplicate delivery, tampered ciphertexts rejected with the
session still usable, changed identities refused, simultaneous initiation, and SPQR negotiated
down (kurir sends none, libsignal accepts and stops sending it).
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

import pytest
from libsignal import Ciphertext, CiphertextType, Libsignal, LibsignalError
from libsignal import PreKeyBundle as LsBundle

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import PublicKey, Rng
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    UntrustedIdentityError,
)
from kurir.crypto.kem import KemPublicKey, KemType
from kurir.crypto.messages import CiphertextMessage, deserialize_ciphertext
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    PreKeyBundle,
    PreKeyId,
    SignedPreKeyId,
    generate_kyber_pre_key,
    generate_pre_keys,
    generate_signed_pre_key,
)
from kurir.crypto.session import SessionRecord, SessionState
from kurir.crypto.session_cipher import message_decrypt, message_encrypt, process_prekey_bundle
from kurir.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

KURIR = "5b0f3f0e-1111-4c1a-9a5e-000000000001"
LS = "5b0f3f0e-2222-4c1a-9a5e-000000000002"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Kurir:
    """A kurir device with in-memory stores, talking to the harness participant ``LS``."""

    def __init__(self, seed: int, *, address: str = KURIR, registration_id: int = 77) -> None:
        self.rng: Rng = random.Random(seed).randbytes
        self.address = ProtocolAddress(address, DeviceId(1))
        self.peer = ProtocolAddress(LS, DeviceId(1))
        self.identity = IdentityKeyPair.generate(self.rng)
        self.registration_id = registration_id
        self.identity_store = InMemoryIdentityKeyStore(self.identity, registration_id)
        self.pre_keys = InMemoryPreKeyStore()
        self.signed = InMemorySignedPreKeyStore()
        self.kyber = InMemoryKyberPreKeyStore()
        self.sessions = InMemorySessionStore()
        self._next = 1

    def bundle(self, *, kem_type: KemType = KemType.KYBER1024, one_time: bool = True) -> LsBundle:
        """A fresh bundle in the harness's form (Kyber1024 by default: libsignal needs it)."""
        key_id = self._next
        self._next += 1
        signed = generate_signed_pre_key(
            self.identity, SignedPreKeyId(key_id), now=NOW, rng=self.rng
        )
        self.signed.save_signed_pre_key(signed.id, signed)
        kyber = generate_kyber_pre_key(
            self.identity, KyberPreKeyId(key_id), now=NOW, rng=self.rng, kem_type=kem_type
        )
        self.kyber.save_kyber_pre_key(kyber.id, kyber, last_resort=False)
        prekey_id = prekey_public = None
        if one_time:
            (pre_key,) = generate_pre_keys(PreKeyId(key_id), 1, self.rng)
            self.pre_keys.save_pre_key(pre_key.id, pre_key)
            prekey_id, prekey_public = pre_key.id, pre_key.key_pair.public_key.serialize()
        return LsBundle(
            registration_id=self.registration_id,
            device_id=1,
            identity_key=self.identity.public_key.serialize(),
            signed_prekey_id=signed.id,
            signed_prekey_public=signed.key_pair.public_key.serialize(),
            signed_prekey_signature=signed.signature,
            kyber_prekey_id=kyber.id,
            kyber_prekey_public=kyber.key_pair.public_key.serialize(),
            kyber_prekey_signature=kyber.signature,
            prekey_id=prekey_id,
            prekey_public=prekey_public,
        )

    def process(self, bundle: LsBundle) -> None:
        """Starts a session with the libsignal participant from its bundle."""
        process_prekey_bundle(
            PreKeyBundle(
                registration_id=bundle.registration_id,
                device_id=DeviceId(bundle.device_id),
                pre_key_id=None if bundle.prekey_id is None else PreKeyId(bundle.prekey_id),
                pre_key=None
                if bundle.prekey_public is None
                else PublicKey.deserialize(bundle.prekey_public),
                signed_pre_key_id=SignedPreKeyId(bundle.signed_prekey_id),
                signed_pre_key=PublicKey.deserialize(bundle.signed_prekey_public),
                signed_pre_key_signature=bundle.signed_prekey_signature,
                identity_key=PublicKey.deserialize(bundle.identity_key),
                kyber_pre_key_id=KyberPreKeyId(bundle.kyber_prekey_id),
                kyber_pre_key=KemPublicKey.deserialize(bundle.kyber_prekey_public),
                kyber_pre_key_signature=bundle.kyber_prekey_signature,
            ),
            self.peer,
            self.sessions,
            self.identity_store,
            now=NOW,
            rng=self.rng,
        )

    def encrypt(self, plaintext: bytes) -> Ciphertext:
        message = message_encrypt(plaintext, self.peer, self.sessions, self.identity_store, now=NOW)
        return Ciphertext(CiphertextType(int(message.message_type)), message.serialize())

    def decrypt(self, ciphertext: Ciphertext) -> bytes:
        message: CiphertextMessage = deserialize_ciphertext(int(ciphertext.type), ciphertext.body)
        return message_decrypt(
            message,
            self.peer,
            self.sessions,
            self.identity_store,
            self.pre_keys,
            self.signed,
            self.kyber,
            rng=self.rng,
        )


def _ls(libsignal: Libsignal) -> None:
    libsignal.create_participant("ls", address=LS, registration_id=4321)


def _converse(libsignal: Libsignal, kurir: Kurir, rounds: int = 4) -> None:
    """Alternating bursts: each burst after a reply is a new DH ratchet step."""
    for r in range(rounds):
        for i in range(2):
            text = f"kurir round {r} message {i}".encode()
            assert libsignal.decrypt("ls", KURIR, kurir.encrypt(text)) == text
        for i in range(2):
            text = f"libsignal round {r} message {i}".encode()
            reply = libsignal.encrypt("ls", KURIR, text)
            assert reply.type is CiphertextType.WHISPER
            assert kurir.decrypt(reply) == text


def _flip(ciphertext: Ciphertext, offset: int) -> Ciphertext:
    body = bytearray(ciphertext.body)
    body[offset] ^= 0x01
    return Ciphertext(ciphertext.type, bytes(body))


@pytest.mark.parametrize("one_time", [True, False], ids=["one-time-prekey", "no-one-time-prekey"])
def test_kurir_starts_from_libsignal_bundle(libsignal: Libsignal, one_time: bool) -> None:
    _ls(libsignal)
    kurir = Kurir(1)
    bundle = libsignal.generate_prekeys("ls", one_time=one_time).bundle
    kurir.process(bundle)
    first = kurir.encrypt(b"hello libsignal")
    second = kurir.encrypt(b"still unanswered")
    assert first.type is second.type is CiphertextType.PREKEY
    assert libsignal.decrypt("ls", KURIR, first) == b"hello libsignal"
    assert libsignal.decrypt("ls", KURIR, second) == b"still unanswered"
    if one_time:
        assert bundle.prekey_id is not None
        assert not libsignal.has_prekey("ls", bundle.prekey_id)
    assert libsignal.saved_identity("ls", KURIR) == kurir.identity.public_key.serialize()
    _converse(libsignal, kurir)
    assert kurir.encrypt(b"answered").type is CiphertextType.WHISPER


@pytest.mark.parametrize("one_time", [True, False], ids=["one-time-prekey", "no-one-time-prekey"])
def test_libsignal_starts_from_kurir_bundle(libsignal: Libsignal, one_time: bool) -> None:
    _ls(libsignal)
    kurir = Kurir(2)
    bundle = kurir.bundle(one_time=one_time)
    libsignal.process_bundle("ls", KURIR, bundle)
    for text in (b"hello kurir", b"second, unanswered"):
        message = libsignal.encrypt("ls", KURIR, text)
        assert message.type is CiphertextType.PREKEY
        assert kurir.decrypt(message) == text
    if one_time:
        assert bundle.prekey_id is not None
        assert kurir.pre_keys.get_pre_key(PreKeyId(bundle.prekey_id)) is None
    assert kurir.kyber.get_kyber_pre_key(KyberPreKeyId(bundle.kyber_prekey_id)) is None
    reply = kurir.encrypt(b"kurir answers")
    assert reply.type is CiphertextType.WHISPER
    assert libsignal.decrypt("ls", KURIR, reply) == b"kurir answers"
    for r in range(4):
        for i in range(2):
            text = f"libsignal {r}.{i}".encode()
            assert kurir.decrypt(libsignal.encrypt("ls", KURIR, text)) == text
        for i in range(2):
            text = f"kurir {r}.{i}".encode()
            assert libsignal.decrypt("ls", KURIR, kurir.encrypt(text)) == text


def test_libsignal_0_90_refuses_ml_kem_bundle(libsignal: Libsignal) -> None:
    """kurir's own KEM type (0x0A) cannot reach libsignal 0.90: it knows Kyber1024 only."""
    _ls(libsignal)
    kurir = Kurir(3)
    with pytest.raises(LibsignalError) as refused:
        libsignal.process_bundle("ls", KURIR, kurir.bundle(kem_type=KemType.MLKEM1024))
    assert "0x0a" in refused.value.message.lower()


def test_spqr_is_negotiated_down(libsignal: Libsignal) -> None:
    """libsignal 0.90 offers SPQR, accepts kurir's messages without it, then stops sending it."""
    _ls(libsignal)
    kurir = Kurir(4)
    libsignal.process_bundle("ls", KURIR, kurir.bundle())
    offer = libsignal.encrypt("ls", KURIR, b"offer")
    assert libsignal.parse_prekey_message(offer.body).signal_message.pq_ratchet  # offered
    assert kurir.decrypt(offer) == b"offer"  # its MAC covers the SPQR bytes we ignore

    ours = kurir.encrypt(b"no spqr here")
    assert libsignal.parse_signal_message(ours.body).pq_ratchet == b""
    assert libsignal.decrypt("ls", KURIR, ours) == b"no spqr here"
    for text in (b"after negotiation", b"and again"):
        after = libsignal.encrypt("ls", KURIR, text)
        assert libsignal.parse_signal_message(after.body).pq_ratchet == b""
        assert kurir.decrypt(after) == text
    _converse(libsignal, kurir, rounds=2)


def test_out_of_order_and_duplicates_both_ways(libsignal: Libsignal) -> None:
    _ls(libsignal)
    kurir = Kurir(5)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.decrypt("ls", KURIR, kurir.encrypt(b"start"))

    # libsignal -> kurir, shuffled across a ratchet step, then a duplicate
    sent = [libsignal.encrypt("ls", KURIR, f"ls {i}".encode()) for i in range(6)]
    for i in (3, 0, 5, 1, 4, 2):
        assert kurir.decrypt(sent[i]) == f"ls {i}".encode()
    with pytest.raises(DuplicateMessageError):
        kurir.decrypt(sent[4])

    # kurir -> libsignal, shuffled, then a duplicate
    ours = [kurir.encrypt(f"kurir {i}".encode()) for i in range(6)]
    for i in (5, 2, 0, 4, 1, 3):
        assert libsignal.decrypt("ls", KURIR, ours[i]) == f"kurir {i}".encode()
    with pytest.raises(LibsignalError) as duplicate:
        libsignal.decrypt("ls", KURIR, ours[2])
    assert duplicate.value.code == "DuplicatedMessage"

    # messages from an older chain still arrive after newer ones (skipped keys kept)
    old = libsignal.encrypt("ls", KURIR, b"old chain")
    libsignal.decrypt("ls", KURIR, kurir.encrypt(b"ratchet"))
    new = libsignal.encrypt("ls", KURIR, b"new chain")
    assert kurir.decrypt(new) == b"new chain"
    assert kurir.decrypt(old) == b"old chain"
    _converse(libsignal, kurir, rounds=2)


def test_tampered_messages_are_rejected_and_sessions_survive(libsignal: Libsignal) -> None:
    _ls(libsignal)
    kurir = Kurir(6)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    first = kurir.encrypt(b"first")

    # a tampered PreKeySignalMessage: libsignal refuses it, then takes the real one
    with pytest.raises(LibsignalError):
        libsignal.decrypt("ls", KURIR, _flip(first, len(first.body) - 2))
    assert libsignal.decrypt("ls", KURIR, first) == b"first"

    for offset in (-1, -9, -20):  # MAC, last ciphertext block, header/ciphertext
        real = libsignal.encrypt("ls", KURIR, b"from libsignal")
        with pytest.raises(InvalidMessageError):
            kurir.decrypt(_flip(real, len(real.body) + offset))
        assert kurir.decrypt(real) == b"from libsignal"

        ours = kurir.encrypt(b"from kurir")
        with pytest.raises(LibsignalError):
            libsignal.decrypt("ls", KURIR, _flip(ours, len(ours.body) + offset))
        assert libsignal.decrypt("ls", KURIR, ours) == b"from kurir"
    _converse(libsignal, kurir, rounds=2)


def test_changed_identity_is_untrusted_both_ways(libsignal: Libsignal) -> None:
    _ls(libsignal)
    kurir = Kurir(7)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.decrypt("ls", KURIR, kurir.encrypt(b"hello"))
    assert kurir.decrypt(libsignal.encrypt("ls", KURIR, b"hi")) == b"hi"

    # the libsignal side reinstalls with a new identity under the same address
    libsignal.reset()
    _ls(libsignal)
    with pytest.raises(UntrustedIdentityError):
        kurir.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.process_bundle("ls", KURIR, kurir.bundle())
    with pytest.raises(UntrustedIdentityError):
        kurir.decrypt(libsignal.encrypt("ls", KURIR, b"new me"))

    # a kurir device with a new identity under the same address is refused by libsignal
    libsignal.reset()
    _ls(libsignal)
    old = Kurir(8)
    old.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.decrypt("ls", KURIR, old.encrypt(b"original identity"))
    impostor = Kurir(9)
    impostor.process(libsignal.generate_prekeys("ls").bundle)
    with pytest.raises(LibsignalError) as untrusted:
        libsignal.decrypt("ls", KURIR, impostor.encrypt(b"same address, new key"))
    assert untrusted.value.code == "UntrustedIdentity"
    # the genuine session is unaffected
    assert libsignal.decrypt("ls", KURIR, old.encrypt(b"still me")) == b"still me"


def test_simultaneous_initiation_settles(libsignal: Libsignal) -> None:
    _ls(libsignal)
    kurir = Kurir(10)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.process_bundle("ls", KURIR, kurir.bundle())
    from_kurir = kurir.encrypt(b"kurir first")
    from_ls = libsignal.encrypt("ls", KURIR, b"libsignal first")
    assert from_kurir.type is from_ls.type is CiphertextType.PREKEY
    assert kurir.decrypt(from_ls) == b"libsignal first"
    assert libsignal.decrypt("ls", KURIR, from_kurir) == b"kurir first"
    # both now hold two sessions; whichever decrypts last wins, and both keep talking
    for r in range(3):
        text = f"kurir after {r}".encode()
        assert libsignal.decrypt("ls", KURIR, kurir.encrypt(text)) == text
        text = f"libsignal after {r}".encode()
        assert kurir.decrypt(libsignal.encrypt("ls", KURIR, text)) == text
    assert kurir.encrypt(b"settled").type is CiphertextType.WHISPER
    assert libsignal.encrypt("ls", KURIR, b"settled").type is CiphertextType.WHISPER


def test_libsignal_session_record_parses_as_kurir_record(libsignal: Libsignal) -> None:
    """kurir stores sessions in libsignal's storage.proto layout: libsignal's own record loads."""
    ls = libsignal.create_participant("ls", address=LS, registration_id=4321)
    kurir = Kurir(11)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.decrypt("ls", KURIR, kurir.encrypt(b"hello"))
    data = libsignal.session_record("ls", KURIR)
    assert data is not None
    record = SessionRecord.deserialize(data)
    state = record.current
    assert state is not None
    assert state.session_version == 4
    assert state.local_identity.serialize() == ls.identity_public
    assert state.remote_identity == kurir.identity.public_key
    assert state.local_registration_id == 4321
    assert state.remote_registration_id == kurir.registration_id
    assert state.pq_ratchet_state == b""  # SPQR negotiated down to V0
    assert state.pending_pre_key is None
    ours = kurir.sessions.load_session(kurir.peer)
    assert ours is not None
    assert ours.current is not None
    assert ours.current.alice_base_key == state.alice_base_key
    # libsignal's receiving chain for kurir's ratchet key is kurir's sending chain, same index
    chain = state.receiver_chain(ours.current.sender_chain.ratchet_key.public_key)
    assert chain is not None
    assert chain.chain_key == ours.current.sender_chain.chain_key
    # and libsignal's sending ratchet key is the one its next message carries
    reply = libsignal.encrypt("ls", KURIR, b"reply")
    assert state.sender_chain.ratchet_key.public_key.serialize() == (
        libsignal.parse_signal_message(reply.body).ratchet_key
    )
    assert kurir.decrypt(reply) == b"reply"
    assert SessionRecord.deserialize(record.serialize()) == record


def test_prekey_messages_out_of_order_and_duplicated_both_ways(libsignal: Libsignal) -> None:
    _ls(libsignal)
    kurir = Kurir(12)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    ours = [kurir.encrypt(f"unanswered {i}".encode()) for i in range(3)]
    assert {m.type for m in ours} == {CiphertextType.PREKEY}
    for i in (2, 0, 1):
        assert libsignal.decrypt("ls", KURIR, ours[i]) == f"unanswered {i}".encode()
    with pytest.raises(LibsignalError) as duplicate:
        libsignal.decrypt("ls", KURIR, ours[0])
    assert duplicate.value.code == "DuplicatedMessage"

    other = Kurir(13, address="5b0f3f0e-3333-4c1a-9a5e-000000000003")
    libsignal.process_bundle("ls", other.address.name, other.bundle())
    theirs = [libsignal.encrypt("ls", other.address.name, f"offer {i}".encode()) for i in range(3)]
    for i in (1, 2, 0):
        assert other.decrypt(theirs[i]) == f"offer {i}".encode()
    with pytest.raises(DuplicateMessageError):
        other.decrypt(theirs[2])
    reply = other.encrypt(b"answer")
    assert libsignal.decrypt("ls", other.address.name, reply) == b"answer"


def test_one_kurir_device_with_two_libsignal_devices(libsignal: Libsignal) -> None:
    libsignal.create_participant("ls1", address=LS, device_id=1)
    libsignal.create_participant("ls2", address=LS, device_id=2)
    kurir = Kurir(14)
    for name, device in (("ls1", 1), ("ls2", 2)):
        kurir.peer = ProtocolAddress(LS, DeviceId(device))
        kurir.process(libsignal.generate_prekeys(name).bundle)
        assert libsignal.decrypt(name, KURIR, kurir.encrypt(name.encode())) == name.encode()
    for name, device in (("ls2", 2), ("ls1", 1)):
        kurir.peer = ProtocolAddress(LS, DeviceId(device))
        text = f"{name} replies".encode()
        assert kurir.decrypt(libsignal.encrypt(name, KURIR, text)) == text
        assert libsignal.decrypt(name, KURIR, kurir.encrypt(b"ok")) == b"ok"


def test_libsignal_serves_prekeys_generated_by_kurir(libsignal: Libsignal) -> None:
    """kurir's Kyber1024 secret keys (kyber-py's expanded form) and signed prekeys load into
    libsignal's stores and decapsulate there."""
    rng = random.Random(15).randbytes
    identity = IdentityKeyPair.generate(rng)
    libsignal.create_participant(
        "ls", address=LS, registration_id=99, identity_private=identity.private_key.serialize()
    )
    signed = generate_signed_pre_key(identity, SignedPreKeyId(21), now=NOW, rng=rng)
    kyber = generate_kyber_pre_key(
        identity, KyberPreKeyId(22), now=NOW, rng=rng, kem_type=KemType.KYBER1024
    )
    added_signed = libsignal.add_signed_prekey(
        "ls", signed.id, signed.key_pair.private_key.serialize(), signature=signed.signature
    )
    added_kyber = libsignal.add_kyber_prekey(
        "ls",
        kyber.id,
        kyber.key_pair.public_key.serialize(),
        kyber.key_pair.secret_key.serialize(),
        signature=kyber.signature,
    )
    assert added_signed.public == signed.key_pair.public_key.serialize()
    assert added_kyber.public == kyber.key_pair.public_key.serialize()
    kurir = Kurir(16)
    kurir.process(
        LsBundle(
            registration_id=99,
            device_id=1,
            identity_key=identity.public_key.serialize(),
            signed_prekey_id=signed.id,
            signed_prekey_public=signed.key_pair.public_key.serialize(),
            signed_prekey_signature=signed.signature,
            kyber_prekey_id=kyber.id,
            kyber_prekey_public=kyber.key_pair.public_key.serialize(),
            kyber_prekey_signature=kyber.signature,
        )
    )
    assert libsignal.decrypt("ls", KURIR, kurir.encrypt(b"to kurir-made keys")) == (
        b"to kurir-made keys"
    )
    (used,) = libsignal.kyber_prekeys_used("ls")
    assert used["id"] == kyber.id


def test_kurir_session_record_is_accepted_by_libsignal(libsignal: Libsignal) -> None:
    """libsignal's SessionRecord.deserialize takes kurir's record, archived states included.

    (That libsignal continues a session from such a record is the next test.)
    """
    _ls(libsignal)
    kurir = Kurir(17)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    libsignal.decrypt("ls", KURIR, kurir.encrypt(b"one"))
    kurir.decrypt(libsignal.encrypt("ls", KURIR, b"two"))
    kurir.process(libsignal.generate_prekeys("ls").bundle)  # archives the first session
    unanswered = kurir.encrypt(b"three")
    record = kurir.sessions.load_session(kurir.peer)
    assert record is not None
    assert record.current is not None
    parsed = libsignal.parse_session_record(record.serialize())
    session = parsed["session"]
    state = record.current
    assert session["version"] == 4
    assert _unb64(session["local_identity"]) == kurir.identity.public_key.serialize()
    assert _unb64(session["root_key"]) == state.root_key
    assert _unb64(session["sender_chain"]["chain_key"]) == state.sender_chain.chain_key.key
    assert session["sender_chain"]["chain_index"] == state.sender_chain.chain_key.index == 1
    assert session["pending_pre_key"] is not None
    assert len(parsed["previous_sessions"]) == 1
    assert libsignal.decrypt("ls", KURIR, unanswered) == b"three"


def _unb64(value: str) -> bytes:
    return base64.b64decode(value)


def _kurir_as_libsignal(libsignal: Libsignal, kurir: Kurir, name: str) -> None:
    """A harness participant with kurir's identity, registration id and address."""
    libsignal.create_participant(
        name,
        address=KURIR,
        registration_id=kurir.registration_id,
        identity_private=kurir.identity.private_key.serialize(),
    )


def test_libsignal_continues_a_session_from_a_kurir_record(libsignal: Libsignal) -> None:
    """libsignal loads the record kurir serialized and carries the session on, both ways.

    The record has been through several DH ratchet steps and holds a skipped message key, so
    every part of ``SessionStructure`` kurir writes is used by libsignal: root key, sending
    chain with its private ratchet key, receiving chains, skipped-key seeds, identities. Then
    kurir takes back the record libsignal wrote and goes on.
    """
    _ls(libsignal)
    kurir = Kurir(18)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    _converse(libsignal, kurir, rounds=3)
    held = libsignal.encrypt("ls", KURIR, b"held back")
    assert kurir.decrypt(libsignal.encrypt("ls", KURIR, b"overtakes it")) == b"overtakes it"
    record = kurir.sessions.load_session(kurir.peer)
    assert record is not None

    _kurir_as_libsignal(libsignal, kurir, "kurir-in-libsignal")
    assert libsignal.set_session_record("kurir-in-libsignal", LS, record.serialize())
    assert libsignal.decrypt("kurir-in-libsignal", LS, held) == b"held back"  # kurir's seed
    for r in range(2):
        sent = libsignal.encrypt("kurir-in-libsignal", LS, f"from kurir's state {r}".encode())
        assert sent.type is CiphertextType.WHISPER
        assert libsignal.decrypt("ls", KURIR, sent) == f"from kurir's state {r}".encode()
        reply = libsignal.encrypt("ls", KURIR, f"reply {r}".encode())
        assert libsignal.decrypt("kurir-in-libsignal", LS, reply) == f"reply {r}".encode()

    handed_back = libsignal.session_record("kurir-in-libsignal", LS)
    assert handed_back is not None
    kurir.sessions.store_session(kurir.peer, SessionRecord.deserialize(handed_back))
    assert kurir.decrypt(libsignal.encrypt("ls", KURIR, b"to kurir again")) == b"to kurir again"
    assert libsignal.decrypt("ls", KURIR, kurir.encrypt(b"kurir goes on")) == b"kurir goes on"


def test_libsignal_continues_an_unanswered_session_from_a_kurir_record(
    libsignal: Libsignal,
) -> None:
    """A kurir record whose session is not yet answered (pending PQXDH data, an archived
    previous session) makes libsignal send the same PreKeySignalMessage fields kurir would."""
    _ls(libsignal)
    kurir = Kurir(19)
    kurir.process(libsignal.generate_prekeys("ls").bundle)
    _converse(libsignal, kurir, rounds=1)
    kurir.process(libsignal.generate_prekeys("ls").bundle)  # archives the answered session
    first = kurir.encrypt(b"first, from kurir")
    record = kurir.sessions.load_session(kurir.peer)
    assert record is not None

    _kurir_as_libsignal(libsignal, kurir, "kurir-in-libsignal")
    assert libsignal.set_session_record("kurir-in-libsignal", LS, record.serialize())
    second = libsignal.encrypt("kurir-in-libsignal", LS, b"second, from libsignal")
    assert first.type is second.type is CiphertextType.PREKEY
    ours, theirs = (libsignal.parse_prekey_message(m.body) for m in (first, second))
    assert (
        ours.registration_id,
        ours.pre_key_id,
        ours.signed_pre_key_id,
        ours.kyber_pre_key_id,
        ours.kyber_ciphertext,
        ours.base_key,
        ours.identity_key,
    ) == (
        theirs.registration_id,
        theirs.pre_key_id,
        theirs.signed_pre_key_id,
        theirs.kyber_pre_key_id,
        theirs.kyber_ciphertext,
        theirs.base_key,
        theirs.identity_key,
    )
    assert libsignal.decrypt("ls", KURIR, first) == b"first, from kurir"
    assert libsignal.decrypt("ls", KURIR, second) == b"second, from libsignal"
    reply = libsignal.encrypt("ls", KURIR, b"answer")
    assert libsignal.decrypt("kurir-in-libsignal", LS, reply) == b"answer"


def test_kurir_writes_libsignal_records_back_byte_for_byte(libsignal: Libsignal) -> None:
    """A record written by libsignal, parsed and serialized again by kurir, is the same bytes.

    Both sides of a libsignal session after DH ratchet steps, a skipped key, and a second
    session that archived the first and is still unanswered (pending PQXDH data); libsignal's
    SPQR state rides along untouched. So kurir's encoder follows prost's choices (field order,
    zero values left out) for every field libsignal writes.
    """
    libsignal.create_participant("a")
    libsignal.create_participant("b")
    libsignal.process_bundle("a", "b", libsignal.generate_prekeys("b").bundle)
    for _ in range(3):
        libsignal.decrypt("b", "a", libsignal.encrypt("a", "b", b"ping"))
        libsignal.decrypt("a", "b", libsignal.encrypt("b", "a", b"pong"))
    libsignal.encrypt("b", "a", b"never delivered: its key stays skipped")
    libsignal.decrypt("a", "b", libsignal.encrypt("b", "a", b"overtakes it"))
    libsignal.process_bundle("a", "b", libsignal.generate_prekeys("b").bundle)
    for name, peer in (("a", "b"), ("b", "a")):
        data = libsignal.session_record(name, peer)
        assert data is not None
        record = SessionRecord.deserialize(data)
        assert record.serialize() == data, name
        for archived in record.archived:
            assert SessionState.deserialize(archived).serialize() == archived, name
    assert SessionRecord.deserialize(libsignal.session_record("a", "b") or b"").archived
