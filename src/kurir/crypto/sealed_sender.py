"""Sealed sender (v1 and v2): a message whose sender only its recipients can learn.

Owns: `UnidentifiedSenderMessageContent` (the inner message with the sender's certificate),
`ContentHint`, the v1 envelope (`sealed_sender_encrypt_v1`, `sealed_sender_decrypt_to_usmc`),
the v2 multi-recipient form (`sealed_sender_multi_recipient_encrypt`; v2 envelopes open through
the same function as v1), the receiving checks (`sealed_sender_open`: certificate chain, expiry,
self-send), and the 1:1 conveniences `sealed_sender_encrypt` / `sealed_sender_decrypt` that
wrap `kurir.crypto.session_cipher` as libsignal's functions of the same names do. The certificates
live in `kurir.crypto.sender_certificate`. A sealed group message is opened with
`sealed_sender_open` and its contents passed to `kurir.crypto.sender_keys.group_decrypt`.

The v1 construction (libsignal ``rust/protocol/src/sealed_sender.rs``, ``sealed_sender_v1``;
Signal's "sealed sender" post), with ``E`` a fresh ephemeral key pair, ``R`` the recipient's
identity key and ``S`` the sender's, public keys in their 33-byte form::

    chain, ck_e, mk_e = HKDF-SHA256(salt = "UnidentifiedDelivery" || R.pub || E.pub,
                                    ikm = X25519(E, R), info = "")   # 96 bytes
    encrypted_static  = AES-256-CTR(ck_e, S.pub) || HMAC-SHA256(mk_e, ...)[:10]
    _, ck_s, mk_s     = HKDF-SHA256(salt = chain || encrypted_static,
                                    ikm = X25519(S, R), info = "")   # first 32 bytes unused
    encrypted_message = AES-256-CTR(ck_s, usmc) || HMAC-SHA256(mk_s, ...)[:10]
    wire              = 0x11 || UnidentifiedSenderMessage{E.pub, encrypted_static,
                                                      encrypted_message}

AES-CTR starts from an all-zero counter block (each key is used once). The receiver checks that
the static key it decrypted equals the key in the sender certificate, so the certificate cannot be
replayed by someone else.

Sealed sender v2 (libsignal's multi-recipient form, AES-256-GCM-SIV): one message encrypted
once for many devices (`sealed_sender_multi_recipient_encrypt`), which the server cuts into one
envelope per recipient (version byte ``0x22``/``0x23``); such an envelope opens like a v1 one.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kurir.crypto import protos
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey, Rng
from kurir.crypto.errors import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidSealedSenderError,
    NoSessionError,
    RemoteProtocolError,
)
from kurir.crypto.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage
from kurir.crypto.sender_certificate import (
    REVOKED_SERVER_CERTIFICATE_KEY_IDS,
    SenderCertificate,
    ServerCertificate,
)
from kurir.crypto.session_cipher import (
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
)
from kurir.crypto.stores import (
    IdentityKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)

SEALED_SENDER_V1_VERSION_BYTE: Final = 0x11
"""First byte of a v1 envelope: major version 1 in both nibbles."""

_SALT_PREFIX: Final = b"UnidentifiedDelivery"
_V2_MAJOR_VERSION: Final = 2
_V2_PREFIX: Final = 32 + 16 + 32  # encrypted message key, authentication tag, ephemeral key
_V2_LABEL_R: Final = b"Sealed Sender v2: r (2023-08)"
_V2_LABEL_K: Final = b"Sealed Sender v2: K"
_V2_LABEL_DH: Final = b"Sealed Sender v2: DH"
_V2_LABEL_DH_S: Final = b"Sealed Sender v2: DH-sender"
_V2_SENT_VERSION_BYTE: Final = 0x23  # service-id recipients (0x22 was UUID-only)
_REGISTRATION_ID_MASK: Final = 0x3FFF
_MAC_LENGTH: Final = 10
_MAX_UINT32: Final = 0xFFFF_FFFF
_ZERO_COUNTER: Final = bytes(16)

# The USMC's ``Type`` enum matches libsignal's CiphertextMessageType except for PreKey (1 vs 3).
_WIRE_PREKEY: Final = 1
_TYPE_TO_WIRE: Final = {
    CiphertextMessageType.PREKEY: _WIRE_PREKEY,
    CiphertextMessageType.WHISPER: int(CiphertextMessageType.WHISPER),
    CiphertextMessageType.SENDERKEY: int(CiphertextMessageType.SENDERKEY),
    CiphertextMessageType.PLAINTEXT: int(CiphertextMessageType.PLAINTEXT),
}
_WIRE_TO_TYPE: Final = {wire: kind for kind, wire in _TYPE_TO_WIRE.items()}


class IdentityKeys(Protocol):
    """An identity key pair: a `KeyPair` or `kurir.crypto.prekeys.IdentityKeyPair`."""

    @property
    def public_key(self) -> PublicKey:
        """The public half."""
        ...

    @property
    def private_key(self) -> PrivateKey:
        """The private half."""
        ...


class SealedSenderSelfSendError(RemoteProtocolError):
    """A sealed message claims to come from this very device (libsignal's ``SealedSenderSelfSend``).

    The caller should drop it silently: it is the server echoing our own message.
    """


class ContentHint(enum.IntEnum):
    """What the receiver should do if the inner message fails to decrypt (libsignal's values).

    Values outside this enum are kept as plain ints, as libsignal keeps unknown hints.
    """

    DEFAULT = 0
    """Show an error at once: the sender will not resend."""
    RESENDABLE = 1
    """The sender can resend: delay any error while asking for a retry."""
    IMPLICIT = 2
    """Implicit content (receipts, typing): show no error at all."""


# --- the inner content ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnidentifiedSenderMessageContent:
    """What a sealed envelope holds: the inner ciphertext and the sender's certificate.

    Build it with `create`; `serialized` is what gets encrypted.

    Attributes:
        msg_type: the inner message's type (1:1 PreKey/Whisper, Sender Key, or plaintext).
        sender: the sender's certificate.
        contents: the inner ciphertext, serialized.
        content_hint: a `ContentHint` value (an unknown value is kept as an int).
        group_id: an opaque group id for group messages, or None.
        serialized: the exact protobuf bytes.
    """

    msg_type: CiphertextMessageType
    sender: SenderCertificate
    contents: bytes = field(repr=False)
    content_hint: int
    group_id: bytes | None
    serialized: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        msg_type: CiphertextMessageType,
        sender: SenderCertificate,
        contents: bytes,
        *,
        content_hint: int = ContentHint.DEFAULT,
        group_id: bytes | None = None,
    ) -> Self:
        """Wraps an inner ciphertext with the sender's certificate.

        Raises:
            InvalidArgumentError: an unknown message type, or a hint outside 0..2^32-1.
        """
        if msg_type not in _TYPE_TO_WIRE:
            raise InvalidArgumentError(f"message type {msg_type} cannot be sealed")
        if not 0 <= content_hint <= _MAX_UINT32:
            raise InvalidArgumentError("content hint must fit in 32 bits")
        group = group_id or None  # libsignal writes an empty group id as absent
        proto = protos.UnidentifiedSenderMessageContentProto(
            type=_TYPE_TO_WIRE[msg_type], sender_certificate=sender.serialized, content=contents
        )
        if content_hint != ContentHint.DEFAULT:
            proto.content_hint = content_hint
        if group is not None:
            proto.group_id = group
        kind = _WIRE_TO_TYPE[_TYPE_TO_WIRE[msg_type]]
        serialized = bytes(proto.SerializeToString())
        return cls(kind, sender, contents, int(content_hint), group, serialized)

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses the inner content (the certificate is parsed, not yet validated).

        Raises:
            InvalidSealedSenderError: malformed, an unknown type, or a missing field.
        """
        try:
            proto = protos.parse(protos.UnidentifiedSenderMessageContentProto, data)
        except ValueError as exc:
            raise InvalidSealedSenderError("malformed sealed sender content") from exc
        has = proto.HasField
        if not has("type") or proto.type not in _WIRE_TO_TYPE:
            raise InvalidSealedSenderError("sealed sender content of unknown type")
        if not (has("sender_certificate") and has("content")):
            raise InvalidSealedSenderError("sealed sender content lacks certificate or content")
        return cls(
            msg_type=_WIRE_TO_TYPE[proto.type],
            sender=SenderCertificate.deserialize(proto.sender_certificate),
            contents=proto.content,
            content_hint=proto.content_hint,
            group_id=proto.group_id if has("group_id") else None,
            serialized=bytes(data),
        )


# --- v1 envelope ------------------------------------------------------------------------------


def _hkdf96(salt: bytes, ikm: bytes) -> tuple[bytes, bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=salt, info=b"").derive(ikm)
    return okm[:32], okm[32:64], okm[64:]


def _aes_ctr(key: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CTR(_ZERO_COUNTER)).encryptor()
    return cipher.update(data) + cipher.finalize()


def _ctr_hmac_encrypt(plaintext: bytes, cipher_key: bytes, mac_key: bytes) -> bytes:
    ciphertext = _aes_ctr(cipher_key, plaintext)
    mac = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()[:_MAC_LENGTH]
    return ciphertext + mac


def _ctr_hmac_decrypt(data: bytes, cipher_key: bytes, mac_key: bytes, what: str) -> bytes:
    if len(data) < _MAC_LENGTH:
        raise InvalidSealedSenderError(f"truncated sealed sender {what}")
    ciphertext, their_mac = data[:-_MAC_LENGTH], data[-_MAC_LENGTH:]
    our_mac = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()[:_MAC_LENGTH]
    if not hmac.compare_digest(our_mac, their_mac):
        raise InvalidSealedSenderError(f"sealed sender {what} fails its MAC")
    return _aes_ctr(cipher_key, ciphertext)


def _agree(private: IdentityKeys, public: PublicKey) -> bytes:
    try:
        return private.private_key.agree(public)
    except InvalidKeyError as exc:
        raise InvalidSealedSenderError("sealed sender key agreement failed") from exc


def sealed_sender_encrypt_v1(
    destination_identity: PublicKey,
    usmc: UnidentifiedSenderMessageContent,
    sender_identity: IdentityKeys,
    rng: Rng,
) -> bytes:
    """Seals a message for one recipient (sealed sender v1, see the module docstring).

    Args:
        destination_identity: the recipient's identity public key (the one trusted for it).
        usmc: the inner content, whose certificate must carry `sender_identity`'s public key.
        sender_identity: our identity key pair.
        rng: randomness for the ephemeral key.

    Returns:
        The envelope bytes to hand to the server without a sender.
    """
    ephemeral = KeyPair.generate(rng)
    recipient = destination_identity.serialize()
    chain_key, cipher_key, mac_key = _hkdf96(
        _SALT_PREFIX + recipient + ephemeral.public_key.serialize(),
        _agree(ephemeral, destination_identity),
    )
    encrypted_static = _ctr_hmac_encrypt(
        sender_identity.public_key.serialize(), cipher_key, mac_key
    )
    _, static_cipher_key, static_mac_key = _hkdf96(
        chain_key + encrypted_static, _agree(sender_identity, destination_identity)
    )
    encrypted_message = _ctr_hmac_encrypt(usmc.serialized, static_cipher_key, static_mac_key)
    envelope = protos.UnidentifiedSenderMessageProto(
        ephemeral_public=ephemeral.public_key.serialize(),
        encrypted_static=encrypted_static,
        encrypted_message=encrypted_message,
    )
    return bytes((SEALED_SENDER_V1_VERSION_BYTE,)) + bytes(envelope.SerializeToString())


def sealed_sender_decrypt_to_usmc(
    ciphertext: bytes, local_identity: IdentityKeys
) -> UnidentifiedSenderMessageContent:
    """Opens an envelope addressed to us (v1, or a received v2), without validating the
    certificate.

    Use `sealed_sender_open` unless you validate the certificate yourself.

    Args:
        ciphertext: the envelope bytes.
        local_identity: our identity key pair.

    Returns:
        The inner content; its sender's identity key is proven to match its certificate.

    Raises:
        InvalidSealedSenderError: empty, of an unknown version, malformed, a MAC or tag fails,
            or the certificate key differs from the key that sealed the message.
    """
    if not ciphertext:
        raise InvalidSealedSenderError("empty sealed sender message")
    version = ciphertext[0] >> 4
    if version == _V2_MAJOR_VERSION:
        return _decrypt_v2(ciphertext[1:], local_identity)
    if version not in (0, 1):  # libsignal accepts a 0 major version as v1
        raise InvalidSealedSenderError(f"unknown sealed sender version {version}")
    try:
        envelope = protos.parse(protos.UnidentifiedSenderMessageProto, ciphertext[1:])
    except ValueError as exc:
        raise InvalidSealedSenderError("malformed sealed sender message") from exc
    if not (
        envelope.HasField("ephemeral_public")
        and envelope.HasField("encrypted_static")
        and envelope.HasField("encrypted_message")
    ):
        raise InvalidSealedSenderError("sealed sender message lacks a field")
    try:
        ephemeral = PublicKey.deserialize(envelope.ephemeral_public)
    except InvalidKeyError as exc:
        raise InvalidSealedSenderError("sealed sender ephemeral key is invalid") from exc

    local_public = local_identity.public_key.serialize()
    chain_key, cipher_key, mac_key = _hkdf96(
        _SALT_PREFIX + local_public + ephemeral.serialize(), _agree(local_identity, ephemeral)
    )
    static_bytes = _ctr_hmac_decrypt(envelope.encrypted_static, cipher_key, mac_key, "key")
    try:
        static_key = PublicKey.deserialize(static_bytes)
    except InvalidKeyError as exc:
        raise InvalidSealedSenderError("sealed sender static key is invalid") from exc
    _, static_cipher_key, static_mac_key = _hkdf96(
        chain_key + envelope.encrypted_static, _agree(local_identity, static_key)
    )
    message = _ctr_hmac_decrypt(
        envelope.encrypted_message, static_cipher_key, static_mac_key, "content"
    )
    usmc = UnidentifiedSenderMessageContent.deserialize(message)
    if not hmac.compare_digest(static_bytes, usmc.sender.key.serialize()):
        raise InvalidSealedSenderError("sender certificate key does not match the sealed key")
    return usmc


def _hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def _decrypt_v2(body: bytes, local_identity: IdentityKeys) -> UnidentifiedSenderMessageContent:
    # The received form of sealed sender v2 (one recipient's cut of a multi-recipient message):
    # C (32) || AT (16) || E.pub (32 raw bytes) || AES-256-GCM-SIV ciphertext. libsignal
    # ``sealed_sender_v2``: m = C xor HKDF(X25519(R, E) || E || R, "...DH"); E must equal the key
    # derived from m ("...r (2023-08)"); K = HKDF(m, "...K"); AT authenticates the sender.
    if len(body) < _V2_PREFIX:
        raise InvalidSealedSenderError("truncated sealed sender v2 message")
    encrypted_key = body[:32]
    tag = body[32:48]
    try:
        ephemeral = PublicKey(body[48:80])
    except InvalidKeyError as exc:
        raise InvalidSealedSenderError("sealed sender v2 ephemeral key is invalid") from exc
    local_public = local_identity.public_key.serialize()
    mask = _hkdf(
        _agree(local_identity, ephemeral) + ephemeral.serialize() + local_public,
        _V2_LABEL_DH,
        32,
    )
    m = bytes(a ^ b for a, b in zip(encrypted_key, mask, strict=True))
    derived = PrivateKey(_hkdf(m, _V2_LABEL_R, 32)).public_key()
    if not hmac.compare_digest(derived.key, ephemeral.key):
        raise InvalidSealedSenderError("sealed sender v2 ephemeral key does not match")
    try:
        message = AESGCMSIV(_hkdf(m, _V2_LABEL_K, 32)).decrypt(bytes(12), body[_V2_PREFIX:], None)
    except InvalidTag as exc:
        raise InvalidSealedSenderError("sealed sender v2 content fails to decrypt") from exc
    usmc = UnidentifiedSenderMessageContent.deserialize(message)
    sender_key = usmc.sender.key
    expected = _hkdf(
        _agree(local_identity, sender_key)
        + ephemeral.serialize()
        + encrypted_key
        + sender_key.serialize()
        + local_public,
        _V2_LABEL_DH_S,
        16,
    )
    if not hmac.compare_digest(expected, tag):
        raise InvalidSealedSenderError("sender certificate key does not match the v2 tag")
    return usmc


# --- v2, multi-recipient sending ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiRecipientDestination:
    """One recipient device of a sealed sender v2 message.

    Attributes:
        address: the device; its name must be a service id (an account UUID, or ``PNI:`` and a
            UUID).
        registration_id: the device's registration id from our session with it (14 bits).
        identity_key: the recipient account's identity key (the one trusted for it).
    """

    address: ProtocolAddress
    registration_id: int
    identity_key: PublicKey


def service_id_fixed_width(name: str) -> bytes:
    """libsignal's 17-byte ServiceId form: kind (0 ACI, 1 PNI) then the 16 UUID bytes.

    Raises:
        InvalidArgumentError: `name` is neither a UUID nor ``PNI:`` followed by a UUID.
    """
    kind, text = (1, name[4:]) if name.startswith("PNI:") else (0, name)
    try:
        return bytes((kind,)) + uuid.UUID(text).bytes
    except ValueError as exc:
        raise InvalidArgumentError("multi-recipient sealed sender needs service ids") from exc


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sealed_sender_multi_recipient_encrypt(
    destinations: Sequence[MultiRecipientDestination],
    usmc: UnidentifiedSenderMessageContent,
    sender_identity: IdentityKeys,
    rng: Rng,
    *,
    excluded: Sequence[str] = (),
) -> bytes:
    """Seals one message for many devices at once (libsignal's sealed sender v2 SentMessage).

    The content is encrypted once (AES-256-GCM-SIV); each recipient account gets its own
    32-byte key share and 16-byte sender tag. The server splits the result into per-recipient
    ReceivedMessages (``0x22``/``0x23`` envelopes), which `sealed_sender_decrypt_to_usmc` opens.

    Wire format (libsignal ``sealed_sender_multi_recipient_encrypt``): ``0x23``, a varint count
    of recipients and excluded recipients, per recipient its 17-byte service id, its devices as
    ``device_id (1 byte) || registration_id (2 bytes, big-endian, top bit = more devices follow)``,
    ``C`` (32) and ``AT`` (16); per excluded recipient its service id and a ``0`` byte; then
    ``E.pub`` (32 raw bytes) and the ciphertext with its tag.

    Args:
        destinations: the recipient devices, those of one account next to each other.
        usmc: the inner content (its certificate carries `sender_identity`'s public key).
        sender_identity: our identity key pair.
        rng: randomness for the message key.
        excluded: service ids of recipients the server should know are left out on purpose.

    Raises:
        InvalidArgumentError: no destination, a name that is not a service id, or a
            registration id above 14 bits.
    """
    if not destinations:
        raise InvalidArgumentError("multi-recipient sealed sender needs a destination")
    m = rng(32)
    ephemeral = KeyPair.from_private_key(PrivateKey(_hkdf(m, _V2_LABEL_R, 32)))
    sealed = AESGCMSIV(_hkdf(m, _V2_LABEL_K, 32)).encrypt(bytes(12), usmc.serialized, None)
    groups: list[list[MultiRecipientDestination]] = []
    for destination in destinations:
        if not 0 <= destination.registration_id <= _REGISTRATION_ID_MASK:
            raise InvalidArgumentError(f"registration id of {destination.address} is invalid")
        if groups and groups[-1][0].address.name == destination.address.name:
            groups[-1].append(destination)
        else:
            groups.append([destination])
    out = bytearray((_V2_SENT_VERSION_BYTE,))
    out += _varint(len(groups) + len(excluded))
    sender_public = sender_identity.public_key.serialize()
    for group in groups:
        out += service_id_fixed_width(group[0].address.name)
        for index, device in enumerate(group):
            more = 0x8000 if index < len(group) - 1 else 0
            out.append(device.address.device_id)
            out += (device.registration_id | more).to_bytes(2, "big")
        their_key = group[0].identity_key
        mask = _hkdf(
            _agree(ephemeral, their_key) + ephemeral.public_key.serialize() + their_key.serialize(),
            _V2_LABEL_DH,
            32,
        )
        encrypted_key = bytes(a ^ b for a, b in zip(m, mask, strict=True))
        tag = _hkdf(
            _agree(sender_identity, their_key)
            + ephemeral.public_key.serialize()
            + encrypted_key
            + sender_public
            + their_key.serialize(),
            _V2_LABEL_DH_S,
            16,
        )
        out += encrypted_key + tag
    for name in excluded:
        out += service_id_fixed_width(name) + b"\x00"
    out += ephemeral.public_key.key + sealed
    return bytes(out)


def sealed_sender_multi_recipient_encrypt_with_sessions(
    destinations: Sequence[ProtocolAddress],
    usmc: UnidentifiedSenderMessageContent,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    rng: Rng,
    *,
    excluded: Sequence[str] = (),
) -> bytes:
    """`sealed_sender_multi_recipient_encrypt` with registration ids from our sessions and
    identity keys from the identity store, as libsignal's function of that name takes them.

    Raises:
        NoSessionError: a destination has no current session or no saved identity.
        InvalidArgumentError: see `sealed_sender_multi_recipient_encrypt`.
    """
    resolved: list[MultiRecipientDestination] = []
    for address in destinations:
        record = session_store.load_session(address)
        identity = identity_store.get_identity(address)
        if record is None or record.current is None or identity is None:
            raise NoSessionError(str(address))
        resolved.append(
            MultiRecipientDestination(address, record.current.remote_registration_id, identity)
        )
    return sealed_sender_multi_recipient_encrypt(
        resolved, usmc, identity_store.get_identity_key_pair(), rng, excluded=excluded
    )


# --- receiving --------------------------------------------------------------------------------


def sealed_sender_open(
    ciphertext: bytes,
    local_identity: IdentityKeys,
    *,
    trust_roots: Iterable[PublicKey],
    now: datetime,
    local_uuid: str,
    local_device_id: DeviceId,
    local_e164: str | None = None,
    known_server_certificates: Mapping[int, ServerCertificate] | None = None,
    revoked_key_ids: frozenset[int] = REVOKED_SERVER_CERTIFICATE_KEY_IDS,
) -> UnidentifiedSenderMessageContent:
    """Opens an envelope and checks its sender, as libsignal's ``sealed_sender_decrypt`` does
    before it decrypts the inner message.

    Next, decrypt ``usmc.contents`` by ``usmc.msg_type`` as coming from
    ``usmc.sender.sender_address``: a 1:1 message with the session cipher (or with
    `sealed_sender_decrypt`), a Sender Key message with ``group_decrypt``.

    Args:
        ciphertext: the envelope bytes.
        local_identity: our identity key pair.
        trust_roots: the trust roots this client ships (all are tried).
        now: the current time (timezone-aware), from the injected clock.
        local_uuid: our account UUID as text.
        local_device_id: our device id.
        local_e164: our phone number if certificates may name senders by number (kurir: None).
        known_server_certificates: server certificates senders may reference by id.
        revoked_key_ids: server certificate ids to refuse.

    Raises:
        InvalidSealedSenderError: the envelope does not open, or the certificate is not valid
            at `now` (unknown signer, bad signature, revoked server certificate, expired).
        SealedSenderSelfSendError: the certificate names this very device.
    """
    usmc = sealed_sender_decrypt_to_usmc(ciphertext, local_identity)
    failure = usmc.sender.validation_failure(
        trust_roots,
        now,
        known_server_certificates=known_server_certificates,
        revoked_key_ids=revoked_key_ids,
    )
    if failure is not None:
        raise InvalidSealedSenderError(f"sender certificate rejected: {failure}")
    if usmc.sender.is_sender(local_uuid, local_device_id, local_e164):
        raise SealedSenderSelfSendError("sealed sender message from this device")
    return usmc


@dataclass(frozen=True, slots=True)
class SealedSenderDecryptionResult:
    """A sealed 1:1 message, opened and decrypted.

    Attributes:
        sender: the sending device (certificate UUID and device id).
        sender_e164: the certificate's phone number, if any.
        message: the plaintext.
        content_hint: the sender's `ContentHint`.
        group_id: the group id the sender attached, if any.
    """

    sender: ProtocolAddress
    sender_e164: str | None
    message: bytes = field(repr=False)
    content_hint: int
    group_id: bytes | None


def sealed_sender_encrypt(
    destination: ProtocolAddress,
    sender_certificate: SenderCertificate,
    plaintext: bytes,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    *,
    now: datetime,
    rng: Rng,
    content_hint: int = ContentHint.DEFAULT,
    group_id: bytes | None = None,
) -> bytes:
    """Encrypts a 1:1 message with the session and seals it (libsignal's ``sealed_sender_encrypt``).

    Args:
        destination: the recipient device (a session must exist).
        sender_certificate: our current certificate from the server.
        plaintext: the padded content.
        session_store: holds the session; advanced on success.
        identity_store: our identity, and the recipient's trusted identity.
        now: the current time (timezone-aware).
        rng: randomness for the sealed-sender ephemeral key.
        content_hint: what the recipient should do on a decryption failure.
        group_id: the group, when this 1:1 message belongs to one.

    Returns:
        The envelope bytes to hand to the server without a sender.

    Raises:
        NoSessionError: no usable session (or no identity) for `destination`.
        UntrustedIdentityError: the recipient's identity is no longer trusted.
    """
    message = message_encrypt(plaintext, destination, session_store, identity_store, now=now)
    their_identity = identity_store.get_identity(destination)
    if their_identity is None:
        raise NoSessionError(str(destination))
    usmc = UnidentifiedSenderMessageContent.create(
        message.message_type,
        sender_certificate,
        message.serialize(),
        content_hint=content_hint,
        group_id=group_id,
    )
    return sealed_sender_encrypt_v1(
        their_identity, usmc, identity_store.get_identity_key_pair(), rng
    )


def sealed_sender_decrypt(
    ciphertext: bytes,
    *,
    trust_roots: Iterable[PublicKey],
    now: datetime,
    local_uuid: str,
    local_device_id: DeviceId,
    identity_store: IdentityKeyStore,
    session_store: SessionStore,
    pre_key_store: PreKeyStore,
    signed_pre_key_store: SignedPreKeyStore,
    kyber_pre_key_store: KyberPreKeyStore,
    rng: Rng,
    local_e164: str | None = None,
    known_server_certificates: Mapping[int, ServerCertificate] | None = None,
) -> SealedSenderDecryptionResult:
    """Opens a sealed 1:1 message, checks its sender and decrypts it with the session.

    Mirrors libsignal's ``sealed_sender_decrypt``: `sealed_sender_open`, then
    ``message_decrypt_signal`` or ``message_decrypt_prekey`` as the certificate's device. A sealed
    group message is refused here (open it with `sealed_sender_open`, then ``group_decrypt``).

    Raises:
        InvalidSealedSenderError: the envelope does not open or the certificate is not valid.
        SealedSenderSelfSendError: the certificate names this very device.
        InvalidMessageError: a Sender Key or plaintext message, or an inner message that does
            not parse or decrypt (and what the session cipher raises: DuplicateMessageError,
            NoSessionError, UntrustedIdentityError, InvalidPreKeyMessageError).
    """
    usmc = sealed_sender_open(
        ciphertext,
        identity_store.get_identity_key_pair(),
        trust_roots=trust_roots,
        now=now,
        local_uuid=local_uuid,
        local_device_id=local_device_id,
        local_e164=local_e164,
        known_server_certificates=known_server_certificates,
    )
    sender = usmc.sender.sender_address
    if usmc.msg_type == CiphertextMessageType.WHISPER:
        message = message_decrypt_signal(
            SignalMessage.deserialize(usmc.contents),
            sender,
            session_store,
            identity_store,
            rng=rng,
        )
    elif usmc.msg_type == CiphertextMessageType.PREKEY:
        message = message_decrypt_prekey(
            PreKeySignalMessage.deserialize(usmc.contents),
            sender,
            session_store,
            identity_store,
            pre_key_store,
            signed_pre_key_store,
            kyber_pre_key_store,
            rng=rng,
        )
    else:
        raise InvalidMessageError(f"unexpected message type {usmc.msg_type} for sealed 1:1")
    return SealedSenderDecryptionResult(
        sender=sender,
        sender_e164=usmc.sender.sender_e164,
        message=message,
        content_hint=usmc.content_hint,
        group_id=usmc.group_id,
    )
