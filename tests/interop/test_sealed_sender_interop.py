"""Live sealed sender v1 between kurir and libsignal: certificates and envelopes, both ways.

libsignal's ``sealedSenderEncrypt`` looks the recipient's identity up in its identity store, which
is filled when a session starts. To let a libsignal participant seal to a kurir identity without
a kurir 1:1 session, a libsignal "twin" holding the kurir identity key publishes a bundle that
the sender processes; the envelope is then opened by kurir with the same identity key.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from libsignal import Libsignal, LibsignalError
from libsignal import PreKeyBundle as LsBundle

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey, Rng
from kurir.crypto.errors import DuplicateMessageError, InvalidSealedSenderError
from kurir.crypto.kem import KemPublicKey, KemType
from kurir.crypto.messages import CiphertextMessageType
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
from kurir.crypto.sealed_sender import (
    ContentHint,
    MultiRecipientDestination,
    SealedSenderDecryptionResult,
    UnidentifiedSenderMessageContent,
    sealed_sender_decrypt,
    sealed_sender_encrypt,
    sealed_sender_encrypt_v1,
    sealed_sender_multi_recipient_encrypt,
    sealed_sender_multi_recipient_encrypt_with_sessions,
    sealed_sender_open,
)
from kurir.crypto.sender_certificate import SenderCertificate, ServerCertificate
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)
from kurir.crypto.session_cipher import process_prekey_bundle
from kurir.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

EXPIRATION_MS = 1_900_000_000_000
NOW_MS = 1_800_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXPIRATION = EPOCH + timedelta(milliseconds=EXPIRATION_MS)
NOW = EPOCH + timedelta(milliseconds=NOW_MS)


@dataclass
class Setup:
    ls: Libsignal
    root: KeyPair
    server: KeyPair
    server_certificate: ServerCertificate
    kurir_uuid: str
    kurir_identity: KeyPair
    kurir_certificate: SenderCertificate
    ls_uuid: str
    ls_identity: PublicKey
    ls_certificate: bytes


@pytest.fixture
def setup(libsignal: Libsignal) -> Setup:
    root = KeyPair.generate()
    server = KeyPair.generate()
    # The server certificate is made by libsignal, the sender certificates by each side.
    server_certificate = ServerCertificate.deserialize(
        libsignal.server_certificate(
            17, server.public_key.serialize(), root.private_key.serialize()
        )
    )
    kurir_uuid = str(uuid.uuid4())
    kurir_identity = KeyPair.generate()
    kurir_certificate = SenderCertificate.create(
        sender_uuid=kurir_uuid,
        sender_device_id=DeviceId(1),
        key=kurir_identity.public_key,
        expiration=EXPIRATION,
        signer=server_certificate,
        signer_key=server.private_key,
        rng=os.urandom,
    )
    ls_uuid = str(uuid.uuid4())
    participant = libsignal.create_participant("citra", address=ls_uuid, device_id=3)
    ls_certificate = libsignal.sender_certificate(
        server_certificate=server_certificate.serialized,
        server_private=server.private_key.serialize(),
        expiration=EXPIRATION_MS,
        name="citra",
    )
    # The twin: kurir's identity inside libsignal, so that citra trusts it as a recipient.
    twin = libsignal.create_participant(
        "kurir-twin", address=kurir_uuid, identity_private=kurir_identity.private_key.serialize()
    )
    assert twin.identity_public == kurir_identity.public_key.serialize()
    libsignal.process_bundle("citra", kurir_uuid, libsignal.generate_prekeys("kurir-twin").bundle)
    return Setup(
        libsignal,
        root,
        server,
        server_certificate,
        kurir_uuid,
        kurir_identity,
        kurir_certificate,
        ls_uuid,
        PublicKey.deserialize(participant.identity_public),
        ls_certificate,
    )


def _open(s: Setup, body: bytes, *, now: datetime = NOW) -> UnidentifiedSenderMessageContent:
    return sealed_sender_open(
        body,
        s.kurir_identity,
        trust_roots=[s.root.public_key],
        now=now,
        local_uuid=s.kurir_uuid,
        local_device_id=DeviceId(1),
    )


def test_certificates_validate_across(setup: Setup) -> None:
    s = setup
    theirs = SenderCertificate.deserialize(s.ls_certificate)
    assert (theirs.sender_uuid, theirs.sender_device_id) == (s.ls_uuid, 3)
    assert theirs.key == s.ls_identity
    assert theirs.validate(s.root.public_key, EXPIRATION)
    assert not theirs.validate(s.root.public_key, EXPIRATION + timedelta(milliseconds=1))
    info = s.ls.parse_sender_certificate(
        s.kurir_certificate.serialized, trust_root=s.root.public_key.serialize(), time=EXPIRATION_MS
    )
    assert info.valid is True
    assert (info.sender_uuid, info.sender_device_id) == (s.kurir_uuid, 1)
    assert info.sender_key == s.kurir_identity.public_key.serialize()
    assert info.server_key_id == 17
    late = s.ls.parse_sender_certificate(
        s.kurir_certificate.serialized,
        trust_root=s.root.public_key.serialize(),
        time=EXPIRATION_MS + 1,
    )
    assert late.valid is False
    other_root = KeyPair.generate().public_key.serialize()
    wrong_root = s.ls.parse_sender_certificate(
        s.kurir_certificate.serialized, trust_root=other_root, time=NOW_MS
    )
    assert wrong_root.valid is False


def test_usmc_bytes_are_identical(setup: Setup) -> None:
    s = setup
    ours = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY,
        s.kurir_certificate,
        b"inner",
        content_hint=ContentHint.RESENDABLE,
        group_id=b"group-id",
    )
    theirs = s.ls.usmc_new(
        7, b"inner", s.kurir_certificate.serialized, content_hint=1, group_id=b"group-id"
    )
    assert ours.serialized == theirs
    plain = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.PREKEY, s.kurir_certificate, b"x"
    )
    assert plain.serialized == s.ls.usmc_new(3, b"x", s.kurir_certificate.serialized)


def test_kurir_seals_libsignal_opens(setup: Setup) -> None:
    s = setup
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.WHISPER,
        s.kurir_certificate,
        b"sealed by kurir",
        content_hint=ContentHint.IMPLICIT,
        group_id=b"g",
    )
    body = sealed_sender_encrypt_v1(s.ls_identity, usmc, s.kurir_identity, os.urandom)
    opened = s.ls.sealed_decrypt_usmc("citra", body)
    assert opened.serialized == usmc.serialized
    assert opened.contents == b"sealed by kurir"
    assert (opened.msg_type, opened.content_hint, opened.group_id) == (2, 2, b"g")
    assert opened.sender.sender_uuid == s.kurir_uuid
    # Tampering anywhere after the version byte is refused by libsignal.
    for index in (5, len(body) // 2, len(body) - 1):
        forged = bytearray(body)
        forged[index] ^= 0x01
        with pytest.raises(LibsignalError):
            s.ls.sealed_decrypt_usmc("citra", bytes(forged))


def test_libsignal_seals_kurir_opens(setup: Setup) -> None:
    s = setup
    usmc = s.ls.usmc_new(2, b"sealed by libsignal", s.ls_certificate, content_hint=1)
    body = s.ls.sealed_encrypt_usmc("citra", s.kurir_uuid, usmc)
    assert body[0] == 0x11
    opened = _open(s, body)
    assert opened.serialized == usmc
    assert opened.contents == b"sealed by libsignal"
    assert opened.msg_type == CiphertextMessageType.WHISPER
    assert opened.content_hint == ContentHint.RESENDABLE
    assert opened.sender.sender_address == ProtocolAddress(s.ls_uuid, DeviceId(3))
    with pytest.raises(InvalidSealedSenderError, match="expired"):
        _open(s, body, now=EXPIRATION + timedelta(milliseconds=1))
    for index in (3, len(body) // 2, len(body) - 1):
        forged = bytearray(body)
        forged[index] ^= 0x01
        with pytest.raises(InvalidSealedSenderError):
            _open(s, bytes(forged))


def test_sealed_group_messages_both_ways(setup: Setup) -> None:
    s = setup
    dist = uuid.uuid4()
    group_id = b"kurir-group-0001"
    store = InMemorySenderKeyStore()
    me = ProtocolAddress(s.kurir_uuid, DeviceId(1))
    citra = ProtocolAddress(s.ls_uuid, DeviceId(3))
    skdm = create_sender_key_distribution_message(me, dist, store, os.urandom)
    s.ls.process_sender_key_distribution("citra", s.kurir_uuid, skdm.serialized)
    theirs = s.ls.sender_key_distribution("citra", str(dist))
    process_sender_key_distribution_message(
        citra, SenderKeyDistributionMessage.deserialize(theirs), store
    )

    # kurir -> libsignal: group_encrypt, wrap, seal; libsignal unseals and group-decrypts.
    inner = group_encrypt(store, me, dist, b"to the group, sealed", os.urandom)
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY,
        s.kurir_certificate,
        inner.serialized,
        content_hint=ContentHint.RESENDABLE,
        group_id=group_id,
    )
    body = sealed_sender_encrypt_v1(s.ls_identity, usmc, s.kurir_identity, os.urandom)
    opened = s.ls.sealed_decrypt_usmc("citra", body)
    assert opened.group_id == group_id
    plaintext = s.ls.group_decrypt("citra", opened.sender.sender_uuid, opened.contents)
    assert plaintext == b"to the group, sealed"

    # libsignal -> kurir.
    inner_theirs = s.ls.group_encrypt("citra", str(dist), b"reply, sealed")
    usmc_theirs = s.ls.usmc_new(7, inner_theirs, s.ls_certificate, group_id=group_id)
    sealed = s.ls.sealed_encrypt_usmc("citra", s.kurir_uuid, usmc_theirs)
    received = _open(s, sealed)
    assert received.msg_type == CiphertextMessageType.SENDERKEY
    assert received.group_id == group_id
    sender = received.sender.sender_address
    assert group_decrypt(received.contents, store, sender) == b"reply, sealed"


def test_libsignal_multi_recipient_v2_reaches_kurir(setup: Setup) -> None:
    s = setup
    dist = uuid.uuid4()
    store = InMemorySenderKeyStore()
    citra = ProtocolAddress(s.ls_uuid, DeviceId(3))
    skdm = SenderKeyDistributionMessage.deserialize(
        s.ls.sender_key_distribution("citra", str(dist))
    )
    process_sender_key_distribution_message(citra, skdm, store)
    inner = s.ls.group_encrypt("citra", str(dist), b"to many, sealed v2")
    usmc = s.ls.usmc_new(7, inner, s.ls_certificate, content_hint=1, group_id=b"v2-group")
    sent = s.ls.sealed_encrypt_multi("citra", [(s.kurir_uuid, 1)], usmc)
    received = s.ls.sealed_multi_for_recipient(sent, s.kurir_uuid)
    assert received[0] >> 4 == 2
    opened = _open(s, received)
    assert opened.serialized == usmc
    assert opened.sender.sender_address == citra
    assert group_decrypt(opened.contents, store, citra) == b"to many, sealed v2"
    forged = bytearray(received)
    forged[-1] ^= 0x01
    with pytest.raises(InvalidSealedSenderError):
        _open(s, bytes(forged))


def test_server_certificate_made_by_kurir_is_accepted_by_libsignal(setup: Setup) -> None:
    s = setup
    server = ServerCertificate.create(99, s.server.public_key, s.root.private_key, os.urandom)
    certificate = SenderCertificate.create(
        sender_uuid=s.kurir_uuid,
        sender_device_id=DeviceId(5),
        key=s.kurir_identity.public_key,
        expiration=EXPIRATION,
        signer=server,
        signer_key=s.server.private_key,
        rng=os.urandom,
    )
    info = s.ls.parse_sender_certificate(
        certificate.serialized, trust_root=s.root.public_key.serialize(), time=NOW_MS
    )
    assert (info.valid, info.server_key_id, info.sender_device_id) == (True, 99, 5)
    revoked = ServerCertificate.create(
        0xDEADC357, s.server.public_key, s.root.private_key, os.urandom
    )
    revoked_certificate = SenderCertificate.create(
        sender_uuid=s.kurir_uuid,
        sender_device_id=DeviceId(5),
        key=s.kurir_identity.public_key,
        expiration=EXPIRATION,
        signer=revoked,
        signer_key=s.server.private_key,
        rng=os.urandom,
    )
    info = s.ls.parse_sender_certificate(
        revoked_certificate.serialized, trust_root=s.root.public_key.serialize(), time=NOW_MS
    )
    assert info.valid is False
    assert not revoked_certificate.validate(s.root.public_key, NOW)


def test_private_key_round_trip(setup: Setup) -> None:
    # The libsignal-made server certificate carries the key kurir generated.
    assert (
        setup.server_certificate.key
        == PrivateKey.deserialize(setup.server.private_key.serialize()).public_key()
    )


class KurirDevice:
    """A kurir device with in-memory stores and a sender certificate, for sealed 1:1 messages."""

    def __init__(self, s: Setup, seed: int) -> None:
        self.rng: Rng = random.Random(seed).randbytes
        self.address = ProtocolAddress(str(uuid.UUID(bytes=self.rng(16))), DeviceId(1))
        self.identity = IdentityKeyPair.generate(self.rng)
        self.identity_store = InMemoryIdentityKeyStore(self.identity, 321)
        self.pre_keys = InMemoryPreKeyStore()
        self.signed = InMemorySignedPreKeyStore()
        self.kyber = InMemoryKyberPreKeyStore()
        self.sessions = InMemorySessionStore()
        self.root = s.root.public_key
        self.certificate = SenderCertificate.create(
            sender_uuid=self.address.name,
            sender_device_id=self.address.device_id,
            key=self.identity.public_key,
            expiration=EXPIRATION,
            signer=s.server_certificate,
            signer_key=s.server.private_key,
            rng=self.rng,
        )

    def bundle(self) -> LsBundle:
        signed = generate_signed_pre_key(self.identity, SignedPreKeyId(1), now=NOW, rng=self.rng)
        self.signed.save_signed_pre_key(signed.id, signed)
        kyber = generate_kyber_pre_key(
            self.identity, KyberPreKeyId(1), now=NOW, rng=self.rng, kem_type=KemType.KYBER1024
        )
        self.kyber.save_kyber_pre_key(kyber.id, kyber, last_resort=False)
        (pre_key,) = generate_pre_keys(PreKeyId(1), 1, self.rng)
        self.pre_keys.save_pre_key(pre_key.id, pre_key)
        return LsBundle(
            registration_id=321,
            device_id=1,
            identity_key=self.identity.public_key.serialize(),
            signed_prekey_id=signed.id,
            signed_prekey_public=signed.key_pair.public_key.serialize(),
            signed_prekey_signature=signed.signature,
            kyber_prekey_id=kyber.id,
            kyber_prekey_public=kyber.key_pair.public_key.serialize(),
            kyber_prekey_signature=kyber.signature,
            prekey_id=pre_key.id,
            prekey_public=pre_key.key_pair.public_key.serialize(),
        )

    def process(self, peer: ProtocolAddress, bundle: LsBundle) -> None:
        assert bundle.prekey_id is not None
        assert bundle.prekey_public is not None
        process_prekey_bundle(
            PreKeyBundle(
                registration_id=bundle.registration_id,
                device_id=DeviceId(bundle.device_id),
                pre_key_id=PreKeyId(bundle.prekey_id),
                pre_key=PublicKey.deserialize(bundle.prekey_public),
                signed_pre_key_id=SignedPreKeyId(bundle.signed_prekey_id),
                signed_pre_key=PublicKey.deserialize(bundle.signed_prekey_public),
                signed_pre_key_signature=bundle.signed_prekey_signature,
                identity_key=PublicKey.deserialize(bundle.identity_key),
                kyber_pre_key_id=KyberPreKeyId(bundle.kyber_prekey_id),
                kyber_pre_key=KemPublicKey.deserialize(bundle.kyber_prekey_public),
                kyber_pre_key_signature=bundle.kyber_prekey_signature,
            ),
            peer,
            self.sessions,
            self.identity_store,
            now=NOW,
            rng=self.rng,
        )

    def seal(self, peer: ProtocolAddress, text: bytes) -> bytes:
        return sealed_sender_encrypt(
            peer,
            self.certificate,
            text,
            self.sessions,
            self.identity_store,
            now=NOW,
            rng=self.rng,
        )

    def unseal(self, body: bytes) -> SealedSenderDecryptionResult:
        return sealed_sender_decrypt(
            body,
            trust_roots=[self.root],
            now=NOW,
            local_uuid=self.address.name,
            local_device_id=self.address.device_id,
            identity_store=self.identity_store,
            session_store=self.sessions,
            pre_key_store=self.pre_keys,
            signed_pre_key_store=self.signed,
            kyber_pre_key_store=self.kyber,
            rng=self.rng,
        )


@pytest.mark.parametrize("kurir_starts", [True, False], ids=["kurir-starts", "libsignal-starts"])
def test_sealed_one_to_one_conversation(setup: Setup, kurir_starts: bool) -> None:
    s = setup
    kurir = KurirDevice(s, seed=11)
    dewi_uuid = str(uuid.uuid4())
    s.ls.create_participant("dewi", address=dewi_uuid)
    dewi = ProtocolAddress(dewi_uuid, DeviceId(1))
    dewi_certificate = s.ls.sender_certificate(
        server_certificate=s.server_certificate.serialized,
        server_private=s.server.private_key.serialize(),
        expiration=EXPIRATION_MS,
        name="dewi",
    )
    root = s.root.public_key.serialize()

    def kurir_to_dewi(text: bytes) -> None:
        body = kurir.seal(dewi, text)
        result = s.ls.sealed_decrypt("dewi", body, root, timestamp=NOW_MS)
        assert result.plaintext == text
        assert (result.sender_uuid, result.sender_device_id) == (kurir.address.name, 1)

    def dewi_to_kurir(text: bytes) -> None:
        body = s.ls.sealed_encrypt("dewi", kurir.address.name, text, dewi_certificate)
        result = kurir.unseal(body)
        assert result.message == text
        assert result.sender == dewi

    if kurir_starts:
        kurir.process(dewi, s.ls.generate_prekeys("dewi").bundle)
        first, second = kurir_to_dewi, dewi_to_kurir
    else:
        s.ls.process_bundle("dewi", kurir.address.name, kurir.bundle())
        first, second = dewi_to_kurir, kurir_to_dewi
    for round_ in range(3):
        first(b"first side, round %d" % round_)
        first(b"first side again, round %d" % round_)
        second(b"second side, round %d" % round_)

    # A replayed sealed message is a duplicate for the session, after the seal checks pass.
    body = s.ls.sealed_encrypt("dewi", kurir.address.name, b"once", dewi_certificate)
    assert kurir.unseal(body).message == b"once"
    with pytest.raises(DuplicateMessageError):
        kurir.unseal(body)


def test_kurir_multi_recipient_v2_reaches_libsignal_and_kurir(setup: Setup) -> None:
    s = setup
    sender = KurirDevice(s, seed=12)
    other_kurir = KurirDevice(s, seed=13)
    members: dict[str, str] = {}
    identities: dict[str, PublicKey] = {}
    for name in ("eka", "fajar"):
        address = str(uuid.uuid4())
        participant = s.ls.create_participant(
            name, address=address, registration_id=1000 + len(members)
        )
        sender.process(ProtocolAddress(address, DeviceId(1)), s.ls.generate_prekeys(name).bundle)
        members[name] = address
        identities[name] = PublicKey.deserialize(participant.identity_public)
    dist = uuid.uuid4()
    store = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(sender.address, dist, store, sender.rng)
    for name in members:
        s.ls.process_sender_key_distribution(name, sender.address.name, skdm.serialized)
    other_store = InMemorySenderKeyStore()
    process_sender_key_distribution_message(sender.address, skdm, other_store)

    inner = group_encrypt(store, sender.address, dist, b"one ciphertext, many devices", sender.rng)
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY,
        sender.certificate,
        inner.serialized,
        content_hint=ContentHint.RESENDABLE,
        group_id=b"v2-from-kurir",
    )
    libsignal_part = sealed_sender_multi_recipient_encrypt_with_sessions(
        [ProtocolAddress(address, DeviceId(1)) for address in members.values()],
        usmc,
        sender.sessions,
        sender.identity_store,
        sender.rng,
    )
    left_out = str(uuid.uuid4())
    sent = sealed_sender_multi_recipient_encrypt(
        [
            MultiRecipientDestination(
                ProtocolAddress(address, DeviceId(1)),
                1000 + index,
                identities[name],
            )
            for index, (name, address) in enumerate(members.items())
        ]
        + [MultiRecipientDestination(other_kurir.address, 321, other_kurir.identity.public_key)],
        usmc,
        sender.identity,
        sender.rng,
        excluded=[left_out],
    )
    # The harness plays the server: it parses the SentMessage and cuts one envelope per account.
    recipients, excluded = s.ls.sealed_multi_parse(sent)
    assert excluded == [left_out]
    assert recipients[members["eka"]] == {"device_ids": [1], "registration_ids": [1000]}
    assert recipients[other_kurir.address.name]["registration_ids"] == [321]
    for name, address in members.items():
        for message in (sent, libsignal_part):
            received = s.ls.sealed_multi_for_recipient(message, address)
            opened = s.ls.sealed_decrypt_usmc(name, received)
            assert opened.serialized == usmc.serialized
        assert s.ls.group_decrypt(name, sender.address.name, inner.serialized) == (
            b"one ciphertext, many devices"
        )
    received = s.ls.sealed_multi_for_recipient(sent, other_kurir.address.name)
    opened_by_kurir = sealed_sender_open(
        received,
        other_kurir.identity,
        trust_roots=[s.root.public_key],
        now=NOW,
        local_uuid=other_kurir.address.name,
        local_device_id=other_kurir.address.device_id,
    )
    assert group_decrypt(opened_by_kurir.contents, other_store, sender.address) == (
        b"one ciphertext, many devices"
    )
