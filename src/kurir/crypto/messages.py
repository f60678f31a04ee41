"""The two 1:1 ciphertext messages of the Signal protocol, in libsignal's wire format.

Owns: `SignalMessage` (a Double Ratchet message), `PreKeySignalMessage` (the first messages of a
session, carrying PQXDH's public inputs around a `SignalMessage`), `CiphertextMessageType` and
the `CiphertextMessage` union; their parsing, serialization and the message MAC. Knows nothing of
chains or sessions: the caller supplies the MAC key and the decrypted fields.

Wire format (libsignal ``rust/protocol/src/protocol.rs`` and ``proto/wire.proto``):

* one version byte, ``(message_version << 4) | current_version``: ``0x44`` for version 4, the
  PQXDH version and the only one kurir speaks;
* the protobuf (proto2, fields written in tag order as prost writes them);
* for `SignalMessage` only, an 8-byte MAC: the first 8 bytes of
  ``HMAC-SHA256(mac_key, sender_identity || receiver_identity || version byte || protobuf)``
  with both identities in their 33-byte serialized form.

The ``pq_ratchet`` field (5) of `SignalMessage` carries the sparse post-quantum ratchet (SPQR)
message. kurir does not run SPQR yet: it sends no such field, which tells libsignal to negotiate
SPQR down (libsignal 0.90's ``min_version`` is V0), and it keeps a peer's bytes verbatim, so
they are covered by the MAC check and then ignored.

The protobufs are Google ``protobuf`` (upb) classes from `kurir.crypto.protos`, whose `parse`
refuses malformed bytes as prost (libsignal) refuses them.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import Final, Self

from kurir.crypto import protos
from kurir.crypto.curve import PublicKey
from kurir.crypto.errors import (
    InvalidKeyError,
    InvalidMessageError,
    LegacyMessageError,
    UnrecognizedVersionError,
)

CURRENT_VERSION: Final = 4
"""The message version of PQXDH sessions (libsignal's ``CIPHERTEXT_MESSAGE_CURRENT_VERSION``)."""

MAC_LENGTH: Final = 8
"""Length of the truncated HMAC-SHA256 that ends every `SignalMessage`."""

_MAX_UINT32: Final = 0xFFFF_FFFF


class CiphertextMessageType(enum.IntEnum):
    """libsignal's message type numbers, as carried in envelopes."""

    WHISPER = 2
    """A `SignalMessage`."""
    PREKEY = 3
    """A `PreKeySignalMessage`."""
    SENDERKEY = 7
    """A Sender Key (group) message."""
    PLAINTEXT = 8
    """Unencrypted content (decryption-error receipts)."""


def _version_byte(message_version: int) -> bytes:
    return bytes((((message_version & 0xF) << 4) | CURRENT_VERSION,))


def _check_version(first_byte: int) -> int:
    version = first_byte >> 4
    if version < CURRENT_VERSION:
        raise LegacyMessageError(version)
    if version > CURRENT_VERSION:
        raise UnrecognizedVersionError(version)
    return version


def _check_uint32(value: int, name: str) -> int:
    if not 0 <= value <= _MAX_UINT32:
        raise InvalidMessageError(f"{name} out of range")
    return value


def _public_key(data: bytes, name: str) -> PublicKey:
    try:
        return PublicKey.deserialize(data)
    except InvalidKeyError as exc:
        raise InvalidMessageError(f"invalid {name}") from exc


def _compute_mac(
    mac_key: bytes, sender_identity: PublicKey, receiver_identity: PublicKey, content: bytes
) -> bytes:
    if len(mac_key) != 32:
        raise InvalidMessageError("MAC key must be 32 bytes")
    # one-shot OpenSSL HMAC: much cheaper per call than an hmac object fed three times
    mac_input = b"".join((sender_identity.serialize(), receiver_identity.serialize(), content))
    return hmac.digest(mac_key, mac_input, "sha256")[:MAC_LENGTH]


@dataclass(frozen=True, slots=True)
class SignalMessage:
    """A Double Ratchet message: header, AES-256-CBC body and MAC.

    Build one with `SignalMessage.create`, parse one with `SignalMessage.deserialize`; then check
    it with `verify_mac` before trusting its body.

    Attributes:
        message_version: 4.
        sender_ratchet_key: the sender's current ratchet public key.
        counter: the message's index in the sender's chain.
        previous_counter: the length of the sender's previous chain.
        ciphertext: the AES-256-CBC body.
        pq_ratchet: the SPQR message bytes (empty when absent).
        serialized: the whole message as sent, MAC included.
    """

    message_version: int
    sender_ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes = field(repr=False)
    pq_ratchet: bytes = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        mac_key: bytes,
        sender_ratchet_key: PublicKey,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        sender_identity: PublicKey,
        receiver_identity: PublicKey,
        pq_ratchet: bytes = b"",
    ) -> Self:
        """Serializes and MACs a new message (version 4).

        Args:
            mac_key: the 32-byte MAC key of the message keys.
            sender_ratchet_key: the sender's ratchet public key.
            counter: the index of the message key in the sending chain.
            previous_counter: the length of the previous sending chain.
            ciphertext: the encrypted body.
            sender_identity: the sender's identity key.
            receiver_identity: the receiver's identity key.
            pq_ratchet: SPQR bytes; empty means the field is left out.
        """
        proto = protos.SignalMessageProto(
            ratchet_key=sender_ratchet_key.serialize(),
            counter=_check_uint32(counter, "counter"),
            previous_counter=_check_uint32(previous_counter, "previous counter"),
            ciphertext=ciphertext,
        )
        if pq_ratchet:
            proto.pq_ratchet = pq_ratchet
        content = _version_byte(CURRENT_VERSION) + proto.SerializeToString()
        mac = _compute_mac(mac_key, sender_identity, receiver_identity, content)
        return cls(
            CURRENT_VERSION,
            sender_ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            pq_ratchet,
            content + mac,
        )

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a message without checking its MAC (the keys are not known yet).

        Raises:
            InvalidMessageError: too short, malformed protobuf, missing field or bad ratchet key.
            LegacyMessageError: a version below 4.
            UnrecognizedVersionError: a version above 4.
        """
        data = bytes(data)
        if len(data) < 1 + MAC_LENGTH:
            raise InvalidMessageError("SignalMessage too short")
        version = _check_version(data[0])
        try:
            proto = protos.parse(protos.SignalMessageProto, data[1:-MAC_LENGTH])
        except ValueError as exc:
            raise InvalidMessageError("malformed SignalMessage protobuf") from exc
        has = proto.HasField
        if not (has("ratchet_key") and has("counter") and has("ciphertext")):
            raise InvalidMessageError("SignalMessage lacks a required field")
        return cls(
            version,
            _public_key(proto.ratchet_key, "ratchet key"),
            proto.counter,
            proto.previous_counter,
            proto.ciphertext,
            proto.pq_ratchet,
            data,
        )

    @property
    def message_type(self) -> CiphertextMessageType:
        """Always `CiphertextMessageType.WHISPER`."""
        return CiphertextMessageType.WHISPER

    def serialize(self) -> bytes:
        """Returns the bytes to send."""
        return self.serialized

    def verify_mac(
        self, sender_identity: PublicKey, receiver_identity: PublicKey, mac_key: bytes
    ) -> bool:
        """Checks the MAC in constant time; True when it matches."""
        content, their_mac = self.serialized[:-MAC_LENGTH], self.serialized[-MAC_LENGTH:]
        our_mac = _compute_mac(mac_key, sender_identity, receiver_identity, content)
        return hmac.compare_digest(our_mac, their_mac)


@dataclass(frozen=True, slots=True)
class PreKeySignalMessage:
    """The first messages of a session: PQXDH's public inputs around a `SignalMessage`.

    Attributes:
        message_version: 4.
        registration_id: the sender's registration id.
        pre_key_id: the one-time EC prekey used, if any.
        signed_pre_key_id: the signed EC prekey used.
        kyber_pre_key_id: the KEM prekey used.
        kyber_ciphertext: the KEM ciphertext (with its type byte).
        base_key: the sender's PQXDH ephemeral ("base") public key.
        identity_key: the sender's identity key.
        message: the enclosed `SignalMessage`.
        serialized: the whole message as sent.
    """

    message_version: int
    registration_id: int
    pre_key_id: int | None
    signed_pre_key_id: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes = field(repr=False)
    base_key: PublicKey = field(repr=False)
    identity_key: PublicKey = field(repr=False)
    message: SignalMessage = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        registration_id: int,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        kyber_pre_key_id: int,
        kyber_ciphertext: bytes,
        base_key: PublicKey,
        identity_key: PublicKey,
        message: SignalMessage,
    ) -> Self:
        """Serializes a new PreKeySignalMessage (version 4) around `message`."""
        proto = protos.PreKeySignalMessageProto(
            base_key=base_key.serialize(),
            identity_key=identity_key.serialize(),
            message=message.serialized,
            registration_id=_check_uint32(registration_id, "registration id"),
            signed_pre_key_id=_check_uint32(signed_pre_key_id, "id"),
            kyber_pre_key_id=_check_uint32(kyber_pre_key_id, "id"),
            kyber_ciphertext=kyber_ciphertext,
        )
        if pre_key_id is not None:
            proto.pre_key_id = _check_uint32(pre_key_id, "id")
        return cls(
            CURRENT_VERSION,
            registration_id,
            pre_key_id,
            signed_pre_key_id,
            kyber_pre_key_id,
            kyber_ciphertext,
            base_key,
            identity_key,
            message,
            _version_byte(CURRENT_VERSION) + proto.SerializeToString(),
        )

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a PreKeySignalMessage and its enclosed `SignalMessage` (MAC not yet checked).

        Raises:
            InvalidMessageError: malformed protobuf, a missing field (the KEM prekey id and
                ciphertext are required in version 4), or a bad key.
            LegacyMessageError: a version below 4.
            UnrecognizedVersionError: a version above 4.
        """
        data = bytes(data)
        if not data:
            raise InvalidMessageError("empty PreKeySignalMessage")
        version = _check_version(data[0])
        try:
            proto = protos.parse(protos.PreKeySignalMessageProto, data[1:])
        except ValueError as exc:
            raise InvalidMessageError("malformed PreKeySignalMessage protobuf") from exc
        has = proto.HasField
        if not (
            has("base_key") and has("identity_key") and has("message") and has("signed_pre_key_id")
        ):
            raise InvalidMessageError("PreKeySignalMessage lacks a required field")
        if not (has("kyber_pre_key_id") and has("kyber_ciphertext")):
            raise InvalidMessageError("PreKeySignalMessage lacks its KEM prekey id or ciphertext")
        return cls(
            version,
            proto.registration_id,
            proto.pre_key_id if has("pre_key_id") else None,
            proto.signed_pre_key_id,
            proto.kyber_pre_key_id,
            proto.kyber_ciphertext,
            _public_key(proto.base_key, "base key"),
            _public_key(proto.identity_key, "identity key"),
            SignalMessage.deserialize(proto.message),
            data,
        )

    @property
    def message_type(self) -> CiphertextMessageType:
        """Always `CiphertextMessageType.PREKEY`."""
        return CiphertextMessageType.PREKEY

    def serialize(self) -> bytes:
        """Returns the bytes to send."""
        return self.serialized


CiphertextMessage = SignalMessage | PreKeySignalMessage
"""What `message_encrypt` returns; send ``message.serialize()`` with ``message.message_type``."""


def deserialize_ciphertext(message_type: int, data: bytes) -> CiphertextMessage:
    """Parses received bytes according to the envelope's message type.

    Raises:
        InvalidMessageError: an unknown type, or the bytes do not parse as that type.
    """
    if message_type == CiphertextMessageType.WHISPER:
        return SignalMessage.deserialize(data)
    if message_type == CiphertextMessageType.PREKEY:
        return PreKeySignalMessage.deserialize(data)
    raise InvalidMessageError(f"message type {message_type} is not a 1:1 ciphertext")
