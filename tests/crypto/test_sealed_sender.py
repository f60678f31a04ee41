"""Tests of sealed sender v1 and its certificates: round trips, libsignal's vectors, tampering."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from signal_device import Device

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidSealedSenderError,
    NoSessionError,
)
from kurir.crypto.messages import CiphertextMessageType
from kurir.crypto.sealed_sender import (
    ContentHint,
    MultiRecipientDestination,
    SealedSenderDecryptionResult,
    SealedSenderSelfSendError,
    UnidentifiedSenderMessageContent,
    sealed_sender_decrypt,
    sealed_sender_decrypt_to_usmc,
    sealed_sender_encrypt,
    sealed_sender_encrypt_v1,
    sealed_sender_multi_recipient_encrypt,
    sealed_sender_open,
    service_id_fixed_width,
)
from kurir.crypto.sender_certificate import SenderCertificate, ServerCertificate

# libsignal rust/protocol/src/sealed_sender.rs tests: trust root = private key of zeros.
LIBSIGNAL_TRUST_ROOT = PrivateKey.deserialize(bytes(32)).public_key()
LIBSIGNAL_SENDER_UUID = "aaaaaaaa-7000-11eb-b32a-33b8a8a487a6"
# test_lossless_round_trip: an unknown field 999 ("crashing right down") after the known ones.
LOSSLESS_DATA = bytes.fromhex(
    "100119697a0000000000002221056c9d1f8deb82b9a898f9c277a1b74989ec009afb5c0acb5e8e69e3d5ca29d632"
    "2a690a2508011221053b03ca070e6f6b2f271d32f27321689cdf4e59b106c10b58fbe15063ed868a5a124024bc92"
    "954e52ad1a105b5bda85c9db410dcfeb42a671b45a523b3a46e9594a8bde0efc671d8e8e046b32c67f59b80a46ff"
    "df24071850779bc21325107902af89322461616161616161612d373030302d313165622d623332612d3333623861"
    "38613438376136ba3e136372617368696e6720726967687420646f776e"
)
LOSSLESS_SIGNATURE = bytes.fromhex(
    "a22d8f86f5d00794f319add821e342c6ffffb6b34f741e569f8b321ab0255f2d1757ecf648e53a3602cae8f09b3f"
    "c80dcf27534d67efd272b6739afc31f75c8c"
)
# test_uuid_bytes_representation
UUID_BYTES_DATA = bytes.fromhex(
    "100119697a000000000000222105e083a8ce423d1c1955174107a85a6a7f3bcbf566723624077f75eafe8e0a0775"
    "2a690a25080112210507a24397ae27d06fa76d2f02cfb5546e0b23a7e0c3670c1eb1e73b135a8e1e4d12407d1275"
    "09ae1f5e9dcaa511793d3e94350dcb269e4ca54500da6e1f4dc13d95940c15badef019edfe8666315500c54e4489"
    "d4b83f6ce79c7f65c9772a1a83d88c3a10aaaaaaaa700011ebb32a33b8a8a487a6"
)
UUID_BYTES_SIGNATURE = bytes.fromhex(
    "755c428e9bf6ba367152f1e545834649b4e8f70df8383a352a953fdb774862af5d42fab573fc52b90ad47c331c36"
    "f93b1a4fa7a2504917d895452ffe7f44bd0e"
)
# test_known_server_cert: the signer is referenced by id 0x7357C357.
KNOWN_REF_DATA = bytes.fromhex(
    "100119697a000000000000222105d75b13e15c7700079dd226f51e5a790ba395e819e88a74d0cf5cedfad8b43348"
    "40d786df9a07322461616161616161612d373030302d313165622d623332612d333362386138613438376136"
)
KNOWN_REF_SIGNATURE = bytes.fromhex(
    "e62667bce627caed56ca2ab309b6ae7bc890a30a7482c0e1fd77ec9c3b7528abfd45c8c42b240509a71d973ef5e0"
    "f1dbd2685fe01410f0fdbaa8fb247a67e08f"
)
# KNOWN_SERVER_CERTIFICATES "Test cert": id 0x7357C357, server key = private key of 0xff bytes.
TEST_SERVER_CERTIFICATE = bytes.fromhex(
    "0a2908d786df9a07122105847c0d2c375234f365e660955187a3735a0f7613d1609d3a6a4d8c53aeaa5a221240e0"
    "b9ebacdfc3aa2827f7924b697784d1c25e44ca05dd433e1a38dc6382eb2730d419ca9a250b1be9d5a9463e61efd6"
    "781777a91b83c97b844d014206e2829785"
)
# KNOWN_SERVER_CERTIFICATES: Signal's production trust root and certificate id 3.
SIGNAL_PRODUCTION_ROOT = bytes.fromhex(
    "054918d08fbdfa83e00c29f8f8073a22ef35df2bea903aff81af03ccbc45c6e93a"
)
SIGNAL_PRODUCTION_CERTIFICATE_3 = bytes.fromhex(
    "0a250803122105bc9d1d290be964810dfa7e94856480a3f7060d004c9762c24c575a1522353a5a1240c11ec3c401"
    "eb0107ab38f8600e8720a63169e0e2eb8a3fae24f63099f85ea319c3c1c46d3454706ae2a679d1fee690a488adda"
    "98a2290b66c906bb60295ed781"
)


EXPIRATION_MS = 1_900_000_000_123  # uses every byte of the fixed64 field
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(milliseconds: int) -> datetime:
    return EPOCH + timedelta(milliseconds=milliseconds)


EXPIRATION = at(EXPIRATION_MS)
NOW = at(EXPIRATION_MS - 86_400_000)


def _signed(certificate: bytes, signature: bytes) -> bytes:
    # SenderCertificate{certificate = 1, signature = 2}, both short enough for 2-byte lengths.
    def field(number: int, value: bytes) -> bytes:
        length = len(value)
        varint = bytes([length]) if length < 0x80 else bytes([length & 0x7F | 0x80, length >> 7])
        return bytes([number << 3 | 2]) + varint + value

    return field(1, certificate) + field(2, signature)


@pytest.mark.parametrize(
    ("data", "signature"),
    [(LOSSLESS_DATA, LOSSLESS_SIGNATURE), (UUID_BYTES_DATA, UUID_BYTES_SIGNATURE)],
)
def test_libsignal_certificate_vectors(data: bytes, signature: bytes) -> None:
    certificate = SenderCertificate.deserialize(_signed(data, signature))
    assert certificate.sender_uuid == LIBSIGNAL_SENDER_UUID
    assert certificate.sender_e164 is None
    assert certificate.sender_device_id == 1
    assert certificate.expiration == 31337
    assert certificate.validate(LIBSIGNAL_TRUST_ROOT, at(31336))
    assert certificate.validate(LIBSIGNAL_TRUST_ROOT, at(31337))
    assert not certificate.validate(LIBSIGNAL_TRUST_ROOT, at(31338))
    assert not certificate.validate(KeyPair.generate(random.Random(0).randbytes).public_key, at(0))


def test_libsignal_referenced_server_certificate() -> None:
    server = ServerCertificate.deserialize(TEST_SERVER_CERTIFICATE)
    assert server.key_id == 0x7357C357
    assert server.key == PrivateKey.deserialize(b"\xff" * 32).public_key()
    assert server.validate(LIBSIGNAL_TRUST_ROOT)
    certificate = SenderCertificate.deserialize(_signed(KNOWN_REF_DATA, KNOWN_REF_SIGNATURE))
    assert certificate.signer == 0x7357C357
    assert not certificate.validate(LIBSIGNAL_TRUST_ROOT, at(31336))  # signer unknown here
    known = {server.key_id: server}
    assert certificate.validate(LIBSIGNAL_TRUST_ROOT, at(31336), known_server_certificates=known)


def test_signal_production_server_certificate_validates() -> None:
    server = ServerCertificate.deserialize(SIGNAL_PRODUCTION_CERTIFICATE_3)
    assert server.key_id == 3
    assert server.validate(PublicKey.deserialize(SIGNAL_PRODUCTION_ROOT))
    assert not server.validate(LIBSIGNAL_TRUST_ROOT)


class World:
    """A trust root, a server certificate, and two users with sender certificates."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed).randbytes
        self.root = KeyPair.generate(self.rng)
        self.server = KeyPair.generate(self.rng)
        self.server_certificate = ServerCertificate.create(
            1, self.server.public_key, self.root.private_key, self.rng
        )
        self.alice = KeyPair.generate(self.rng)
        self.bob = KeyPair.generate(self.rng)
        self.alice_uuid = str(uuid.UUID(bytes=self.rng(16)))
        self.bob_uuid = str(uuid.UUID(bytes=self.rng(16)))
        self.alice_certificate = self.certificate(
            self.alice_uuid, self.alice, expiration=EXPIRATION
        )

    def certificate(
        self,
        sender: str,
        key: KeyPair,
        *,
        expiration: datetime,
        server_certificate: ServerCertificate | None = None,
        server_key: KeyPair | None = None,
    ) -> SenderCertificate:
        return SenderCertificate.create(
            sender_uuid=sender,
            sender_device_id=DeviceId(2),
            key=key.public_key,
            expiration=expiration,
            signer=server_certificate or self.server_certificate,
            signer_key=(server_key or self.server).private_key,
            rng=self.rng,
        )

    def seal(
        self, contents: bytes = b"inner", certificate: SenderCertificate | None = None
    ) -> bytes:
        usmc = UnidentifiedSenderMessageContent.create(
            CiphertextMessageType.WHISPER, certificate or self.alice_certificate, contents
        )
        return sealed_sender_encrypt_v1(self.bob.public_key, usmc, self.alice, self.rng)

    def open(self, body: bytes, *, now: datetime = NOW) -> UnidentifiedSenderMessageContent:
        return sealed_sender_open(
            body,
            self.bob,
            trust_roots=[self.root.public_key],
            now=now,
            local_uuid=self.bob_uuid,
            local_device_id=DeviceId(1),
        )


def test_round_trip() -> None:
    world = World()
    body = world.seal(b"hello bob")
    assert body[0] == 0x11
    usmc = world.open(body)
    assert usmc.contents == b"hello bob"
    assert usmc.msg_type == CiphertextMessageType.WHISPER
    assert usmc.sender.sender_address.name == world.alice_uuid
    assert usmc.sender.sender_address.device_id == 2
    assert usmc.sender.key == world.alice.public_key
    assert usmc.content_hint == ContentHint.DEFAULT
    assert usmc.group_id is None
    assert sealed_sender_decrypt_to_usmc(body, world.bob).serialized == usmc.serialized


@pytest.mark.parametrize(
    "msg_type",
    [
        CiphertextMessageType.PREKEY,
        CiphertextMessageType.WHISPER,
        CiphertextMessageType.SENDERKEY,
        CiphertextMessageType.PLAINTEXT,
    ],
)
def test_usmc_round_trip(msg_type: CiphertextMessageType) -> None:
    world = World()
    usmc = UnidentifiedSenderMessageContent.create(
        msg_type,
        world.alice_certificate,
        b"c",
        content_hint=ContentHint.IMPLICIT,
        group_id=b"group-1",
    )
    again = UnidentifiedSenderMessageContent.deserialize(usmc.serialized)
    assert again == usmc
    # The wire type of a PreKey message is 1, not 3.
    assert usmc.serialized[:2] == bytes([0x08, 1 if msg_type == 3 else msg_type])


def test_unknown_content_hint_is_kept_and_empty_group_id_omitted() -> None:
    world = World()
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.WHISPER, world.alice_certificate, b"c", content_hint=9, group_id=b""
    )
    again = UnidentifiedSenderMessageContent.deserialize(usmc.serialized)
    assert again.content_hint == 9
    assert again.group_id is None
    assert again == usmc
    with pytest.raises(InvalidArgumentError):
        UnidentifiedSenderMessageContent.create(
            CiphertextMessageType.WHISPER, world.alice_certificate, b"c", content_hint=-1
        )


def test_certificate_expiry_is_checked_against_the_injected_clock() -> None:
    world = World()
    body = world.seal()
    assert world.alice_certificate.expiration == EXPIRATION_MS
    assert world.alice_certificate.expires_at == EXPIRATION
    assert world.open(body, now=EXPIRATION).contents == b"inner"
    # Sub-millisecond times count as the millisecond they are in, as on the wire.
    assert world.open(body, now=EXPIRATION + timedelta(microseconds=999)).contents == b"inner"
    with pytest.raises(InvalidSealedSenderError, match="expired"):
        world.open(body, now=at(EXPIRATION_MS + 1))
    with pytest.raises(InvalidArgumentError):
        world.open(body, now=datetime(2030, 1, 1))  # naive: no time zone


def test_wrong_trust_root_is_rejected() -> None:
    world = World()
    body = world.seal()
    with pytest.raises(InvalidSealedSenderError, match="trust root"):
        sealed_sender_open(
            body,
            world.bob,
            trust_roots=[KeyPair.generate(world.rng).public_key],
            now=NOW,
            local_uuid=world.bob_uuid,
            local_device_id=DeviceId(1),
        )
    # Several roots: one of them suffices.
    usmc = sealed_sender_open(
        body,
        world.bob,
        trust_roots=[KeyPair.generate(world.rng).public_key, world.root.public_key],
        now=NOW,
        local_uuid=world.bob_uuid,
        local_device_id=DeviceId(1),
    )
    assert usmc.contents == b"inner"


def test_sender_certificate_signed_by_another_key_is_rejected() -> None:
    world = World()
    rogue = KeyPair.generate(world.rng)
    forged = world.certificate(
        world.alice_uuid, world.alice, expiration=EXPIRATION, server_key=rogue
    )
    with pytest.raises(InvalidSealedSenderError, match="not signed by the server"):
        world.open(world.seal(certificate=forged))


def test_server_certificate_not_from_the_root_is_rejected() -> None:
    world = World()
    rogue_root = KeyPair.generate(world.rng)
    rogue_server = ServerCertificate.create(
        1, world.server.public_key, rogue_root.private_key, world.rng
    )
    forged = world.certificate(
        world.alice_uuid, world.alice, expiration=EXPIRATION, server_certificate=rogue_server
    )
    with pytest.raises(InvalidSealedSenderError, match="trust root"):
        world.open(world.seal(certificate=forged))


def test_revoked_server_certificate_is_rejected() -> None:
    world = World()
    revoked = ServerCertificate.create(
        0xDEADC357, world.server.public_key, world.root.private_key, world.rng
    )
    assert not revoked.validate(world.root.public_key)
    assert revoked.validate(world.root.public_key, revoked_key_ids=frozenset())
    certificate = world.certificate(
        world.alice_uuid, world.alice, expiration=EXPIRATION, server_certificate=revoked
    )
    with pytest.raises(InvalidSealedSenderError, match="revoked"):
        world.open(world.seal(certificate=certificate))


def test_certificate_of_another_identity_is_rejected() -> None:
    # Mallory seals with her own identity but Alice's (valid) certificate.
    world = World()
    mallory = KeyPair.generate(world.rng)
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.WHISPER, world.alice_certificate, b"forged"
    )
    body = sealed_sender_encrypt_v1(world.bob.public_key, usmc, mallory, world.rng)
    with pytest.raises(InvalidSealedSenderError, match="does not match"):
        sealed_sender_decrypt_to_usmc(body, world.bob)


def test_self_send_is_reported() -> None:
    world = World()
    body = world.seal()
    with pytest.raises(SealedSenderSelfSendError):
        sealed_sender_open(
            body,
            world.bob,
            trust_roots=[world.root.public_key],
            now=NOW,
            local_uuid=world.alice_uuid,
            local_device_id=DeviceId(2),
        )
    # Same account, other device: not a self-send.
    usmc = sealed_sender_open(
        body,
        world.bob,
        trust_roots=[world.root.public_key],
        now=NOW,
        local_uuid=world.alice_uuid,
        local_device_id=DeviceId(1),
    )
    assert usmc.contents == b"inner"


def test_wrong_recipient_cannot_open() -> None:
    world = World()
    with pytest.raises(InvalidSealedSenderError):
        sealed_sender_decrypt_to_usmc(world.seal(), KeyPair.generate(world.rng))


def test_every_altered_byte_is_rejected() -> None:
    world = World()
    body = world.seal(b"x" * 40)
    # The first byte's low nibble is not checked (libsignal reads only the major version).
    assert world.open(bytes([0x1F]) + body[1:]).contents == b"x" * 40
    for index in range(1, len(body)):
        forged = bytearray(body)
        forged[index] ^= 0x04
        with pytest.raises(InvalidSealedSenderError):
            world.open(bytes(forged))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x22" + bytes(100),  # sealed sender v2 is not supported
        b"\x31\x0a\x01",
        b"\x11",  # no fields
        b"\x11\x0a\x21\x06" + bytes(32) + b"\x12\x00\x1a\x00",  # bad key type
        b"\x11\x0a\x21\x05" + bytes(32) + b"\x12\x03abc\x1a\x00",  # small-order point
    ],
)
def test_malformed_envelopes(body: bytes) -> None:
    world = World()
    with pytest.raises(InvalidSealedSenderError):
        sealed_sender_decrypt_to_usmc(body, world.bob)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x0a\x00",  # no signature
        b"\x12\x00",  # no certificate
        _signed(b"\x10\x01", b"s"),  # no expiry, key, signer or sender
        _signed(bytes.fromhex("100019697a00000000000000"), b"s"),  # device 0
        _signed(bytes.fromhex("10ff01"), b"s"),  # device 255
        _signed(KNOWN_REF_DATA.replace(bytes.fromhex("2221"), bytes.fromhex("2220"), 1), b"s"),
    ],
)
def test_malformed_sender_certificates(data: bytes) -> None:
    with pytest.raises(InvalidSealedSenderError):
        SenderCertificate.deserialize(data)


def test_certificate_wire_round_trip_and_argument_checks() -> None:
    world = World()
    again = SenderCertificate.deserialize(world.alice_certificate.serialized)
    assert again == world.alice_certificate
    assert ServerCertificate.deserialize(world.server_certificate.serialized) == (
        world.server_certificate
    )
    with pytest.raises(InvalidArgumentError):
        world.certificate(world.alice_uuid, world.alice, expiration=at(-1))
    with pytest.raises(InvalidArgumentError):
        ServerCertificate.create(2**32, world.server.public_key, world.root.private_key, world.rng)


def test_certificate_decoding_follows_protobuf_rules() -> None:
    world = World()
    body = world.alice_certificate.certificate
    # A second senderUuid member later in the message wins (oneof semantics, as in prost).
    other = uuid.UUID(int=5)
    with_bytes = body + b"\x3a\x10" + other.bytes
    certificate = SenderCertificate.deserialize(_signed(with_bytes, b"s"))
    assert certificate.sender_uuid == str(other)
    # A known field with the wrong wire type is refused; an unknown field is skipped.
    with pytest.raises(InvalidSealedSenderError):
        SenderCertificate.deserialize(_signed(body + b"\x18\x01", b"s"))
    skipped = SenderCertificate.deserialize(_signed(body + b"\xf8\x3e\x01", b"s"))
    assert skipped.sender_uuid == world.alice_uuid
    for truncated in (body[:-1], body + b"\x19\x00", body + b"\x80"):
        with pytest.raises(InvalidSealedSenderError):
            SenderCertificate.deserialize(_signed(truncated, b"s"))


class SealedPair:
    """Two kurir devices with sender certificates, for sealed 1:1 messages over real sessions."""

    def __init__(self) -> None:
        self.world = World(seed=21)
        self.alice = Device(self.world.alice_uuid, 31, device_id=2)
        self.bob = Device(self.world.bob_uuid, 32)
        self.certificates = {
            id(device): SenderCertificate.create(
                sender_uuid=device.address.name,
                sender_device_id=device.address.device_id,
                key=device.identity.public_key,
                expiration=EXPIRATION,
                signer=self.world.server_certificate,
                signer_key=self.world.server.private_key,
                rng=self.world.rng,
            )
            for device in (self.alice, self.bob)
        }
        self.alice.start(self.bob)

    def seal(self, sender: Device, recipient: Device, text: bytes) -> bytes:
        return sealed_sender_encrypt(
            recipient.address,
            self.certificates[id(sender)],
            text,
            sender.sessions,
            sender.identity_store,
            now=sender.now,
            rng=sender.rng,
            content_hint=ContentHint.RESENDABLE,
        )

    def unseal(
        self, recipient: Device, body: bytes, *, now: datetime = NOW
    ) -> SealedSenderDecryptionResult:
        return sealed_sender_decrypt(
            body,
            trust_roots=[self.world.root.public_key],
            now=now,
            local_uuid=recipient.address.name,
            local_device_id=recipient.address.device_id,
            identity_store=recipient.identity_store,
            session_store=recipient.sessions,
            pre_key_store=recipient.pre_keys,
            signed_pre_key_store=recipient.signed_pre_keys,
            kyber_pre_key_store=recipient.kyber_pre_keys,
            rng=recipient.rng,
        )


def test_sealed_one_to_one_conversation() -> None:
    pair = SealedPair()
    alice, bob = pair.alice, pair.bob
    for round_ in range(3):
        body = pair.seal(alice, bob, b"a%d" % round_)
        result = pair.unseal(bob, body)
        assert result.message == b"a%d" % round_
        assert result.sender == alice.address
        assert result.content_hint == ContentHint.RESENDABLE
        reply = pair.seal(bob, alice, b"b%d" % round_)
        assert pair.unseal(alice, reply).message == b"b%d" % round_


def test_rejected_seal_leaves_the_session_untouched() -> None:
    pair = SealedPair()
    body = pair.seal(pair.alice, pair.bob, b"first")
    late = at(EXPIRATION_MS + 1)
    forged = bytearray(body)
    forged[-1] ^= 0x01
    for bad_body, now in ((body, late), (bytes(forged), NOW)):
        with pytest.raises(InvalidSealedSenderError):
            pair.unseal(pair.bob, bad_body, now=now)
        assert pair.bob.sessions.load_session(pair.alice.address) is None
        assert len(pair.bob.pre_keys) == 1
    assert pair.unseal(pair.bob, body).message == b"first"
    with pytest.raises(DuplicateMessageError):
        pair.unseal(pair.bob, body)


def test_sealed_encrypt_without_session_is_refused() -> None:
    pair = SealedPair()
    stranger = Device("stranger", 40)
    with pytest.raises(NoSessionError):
        pair.seal(pair.alice, stranger, b"x")


def test_sealed_group_content_is_refused_by_the_one_to_one_path() -> None:
    pair = SealedPair()
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY, pair.certificates[id(pair.alice)], b"group"
    )
    body = sealed_sender_encrypt_v1(
        pair.bob.identity.public_key, usmc, pair.alice.identity, pair.world.rng
    )
    with pytest.raises(InvalidMessageError, match="unexpected message type"):
        pair.unseal(pair.bob, body)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _cut_for_recipient(sent: bytes, service_id: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """What the server does with a v2 SentMessage: one ReceivedMessage for one account.

    Returns the envelope (``0x22`` || C || AT || E.pub || ciphertext) and the (device id,
    registration id) pairs listed for the account.
    """
    assert sent[0] == 0x23
    count, pos = _read_varint(sent, 1)
    found: tuple[bytes, list[tuple[int, int]]] | None = None
    for _ in range(count):
        recipient = sent[pos : pos + 17]
        pos += 17
        devices: list[tuple[int, int]] = []
        if sent[pos] == 0:  # excluded recipient
            pos += 1
            continue
        while True:
            device_id, field = sent[pos], int.from_bytes(sent[pos + 1 : pos + 3], "big")
            pos += 3
            devices.append((device_id, field & 0x3FFF))
            if not field & 0x8000:
                break
        c_and_at = sent[pos : pos + 48]
        pos += 48
        if recipient == service_id:
            found = (c_and_at, devices)
    assert found is not None
    c_and_at, devices = found
    return b"\x22" + c_and_at + sent[pos:], devices


def test_multi_recipient_v2_round_trip_and_fan_out() -> None:
    world = World(seed=5)
    carol = KeyPair.generate(world.rng)
    bob_id, carol_id = world.bob_uuid, str(uuid.UUID(int=99))
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY, world.alice_certificate, b"to all", group_id=b"g"
    )
    destinations = [
        MultiRecipientDestination(ProtocolAddress(bob_id, DeviceId(1)), 11, world.bob.public_key),
        MultiRecipientDestination(ProtocolAddress(bob_id, DeviceId(3)), 12, world.bob.public_key),
        MultiRecipientDestination(ProtocolAddress(carol_id, DeviceId(1)), 13, carol.public_key),
    ]
    left_out = str(uuid.UUID(int=100))
    sent = sealed_sender_multi_recipient_encrypt(
        destinations, usmc, world.alice, world.rng, excluded=[left_out]
    )
    for name, key, devices in (
        (bob_id, world.bob, [(1, 11), (3, 12)]),
        (carol_id, carol, [(1, 13)]),
    ):
        received, listed = _cut_for_recipient(sent, b"\x00" + uuid.UUID(name).bytes)
        assert listed == devices
        assert sealed_sender_decrypt_to_usmc(received, key).serialized == usmc.serialized
    bob_envelope, _ = _cut_for_recipient(sent, b"\x00" + uuid.UUID(bob_id).bytes)
    assert world.open(bob_envelope).contents == b"to all"
    with pytest.raises(InvalidSealedSenderError):
        sealed_sender_decrypt_to_usmc(bob_envelope, carol)  # Carol cannot use Bob's share
    for index in (1, 33, 49, 81, len(bob_envelope) - 1):
        forged = bytearray(bob_envelope)
        forged[index] ^= 0x01
        with pytest.raises(InvalidSealedSenderError):
            sealed_sender_decrypt_to_usmc(bytes(forged), world.bob)


def test_multi_recipient_v2_tag_binds_the_sender_identity() -> None:
    # Mallory encrypts with Alice's certificate: the tag, made with Mallory's identity, fails.
    world = World(seed=6)
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY, world.alice_certificate, b"forged"
    )
    mallory = KeyPair.generate(world.rng)
    destination = MultiRecipientDestination(
        ProtocolAddress(world.bob_uuid, DeviceId(1)), 1, world.bob.public_key
    )
    sent = sealed_sender_multi_recipient_encrypt([destination], usmc, mallory, world.rng)
    received, _ = _cut_for_recipient(sent, b"\x00" + uuid.UUID(world.bob_uuid).bytes)
    with pytest.raises(InvalidSealedSenderError, match="tag"):
        sealed_sender_decrypt_to_usmc(received, world.bob)


def test_multi_recipient_v2_argument_checks() -> None:
    world = World(seed=7)
    usmc = UnidentifiedSenderMessageContent.create(
        CiphertextMessageType.SENDERKEY, world.alice_certificate, b"x"
    )
    with pytest.raises(InvalidArgumentError):
        sealed_sender_multi_recipient_encrypt([], usmc, world.alice, world.rng)
    for address, registration_id in (
        (ProtocolAddress("not-a-uuid", DeviceId(1)), 1),
        (ProtocolAddress(world.bob_uuid, DeviceId(1)), 0x4000),
    ):
        destination = MultiRecipientDestination(address, registration_id, world.bob.public_key)
        with pytest.raises(InvalidArgumentError):
            sealed_sender_multi_recipient_encrypt([destination], usmc, world.alice, world.rng)
    assert service_id_fixed_width("PNI:" + world.bob_uuid)[0] == 1
