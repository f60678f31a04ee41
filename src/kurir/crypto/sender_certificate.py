"""Sealed-sender certificates: who sent a sealed message, vouched for by the server.

Owns: `ServerCertificate` (a server signing key, signed by a trust root), `SenderCertificate`
(a sender's account id, device and identity key with an expiry, signed by a server key), their
libsignal wire forms and their validation. Knows nothing of the sealed envelope
(`kurir.crypto.sealed_sender`) nor of how the server issues certificates (it calls `create`).

The chain of trust (libsignal ``rust/protocol/src/sealed_sender.rs``, ``sealed_sender.proto``):
a client ships the trust root's public key; a `ServerCertificate` carries ``{id, key}`` and the
trust root's XEdDSA signature over those bytes; a `SenderCertificate` carries the sender and the
server certificate (embedded, or referenced by id) and the server key's signature. A sender
certificate is valid at time ``now`` (a timezone-aware datetime from the injected clock, compared
in whole milliseconds since 1970, the wire's unit) when its server certificate's id is
not revoked and is signed by a trusted root, its own signature verifies with the server key, and
``now <= expiration``.

Identifiers: kurir's sender "uuid" is the sender account's internal UUID (as libsignal's ACI
string), never an app identifier; the optional E.164 field is kept for wire compatibility and
kurir leaves it empty.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Self

from pure_protobuf.annotations import Field, fixed64, uint
from pure_protobuf.message import BaseMessage

from kurir.crypto.address import MAX_DEVICE_ID, DeviceId, ProtocolAddress
from kurir.crypto.curve import PrivateKey, PublicKey, Rng
from kurir.crypto.errors import InvalidArgumentError, InvalidKeyError, InvalidSealedSenderError

REVOKED_SERVER_CERTIFICATE_KEY_IDS: Final = frozenset({0xDEADC357})
"""Server certificate ids refused whatever their signature (libsignal's list: a test id)."""

_MAX_UINT32: Final = 0xFFFF_FFFF
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
_MAX_UINT64: Final = 2**64 - 1


def to_millis(moment: datetime) -> int:
    """Milliseconds since 1970 (rounded down), the unit of certificate expirations.

    Raises:
        InvalidArgumentError: a naive datetime (without a time zone).
    """
    if moment.tzinfo is None:
        raise InvalidArgumentError("times must be timezone-aware")
    return (moment - _EPOCH) // _MILLISECOND


# --- libsignal proto/sealed_sender.proto (proto2) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _SignedProto(BaseMessage):
    # ServerCertificate and SenderCertificate share this outer shape.
    certificate: Annotated[bytes | None, Field(1)] = None
    signature: Annotated[bytes | None, Field(2)] = None


@dataclass(frozen=True, slots=True)
class _ServerCertificateData(BaseMessage):
    id: Annotated[uint | None, Field(1)] = None
    key: Annotated[bytes | None, Field(2)] = None


@dataclass(frozen=True, slots=True)
class _SenderCertificateData(BaseMessage):
    # Declared in the order prost writes them: plain fields, then the `signer` oneof (5 | 8),
    # then the `senderUuid` oneof (6 | 7).
    sender_e164: Annotated[str | None, Field(1)] = None
    sender_device: Annotated[uint | None, Field(2)] = None
    expires: Annotated[fixed64 | None, Field(3)] = None
    identity_key: Annotated[bytes | None, Field(4)] = None
    signer_certificate: Annotated[bytes | None, Field(5)] = None
    signer_id: Annotated[uint | None, Field(8)] = None
    uuid_string: Annotated[str | None, Field(6)] = None
    uuid_bytes: Annotated[bytes | None, Field(7)] = None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise InvalidSealedSenderError("malformed varint in sender certificate")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


# Wire type of each known field of ``SenderCertificate.Certificate``: 0 varint, 1 I64, 2 LEN.
_CERTIFICATE_WIRE_TYPES: Final = {1: 2, 2: 0, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2, 8: 0}
_ONEOF_PARTNER: Final = {5: 8, 8: 5, 6: 7, 7: 6}  # signer (5 | 8), senderUuid (6 | 7)


def _decode_sender_certificate_data(data: bytes) -> _SenderCertificateData:
    """Decodes ``SenderCertificate.Certificate`` by hand.

    pure-protobuf 3.1.5 decodes ``fixed64`` with a 4-byte struct (its encoder is right), so the
    ``expires`` field cannot be read through it. As in prost, the last occurrence of a field (or
    of a oneof member) wins, unknown fields are skipped, and a known field of the wrong wire type
    is an error.
    """
    values: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if pos + size > len(data):
                raise InvalidSealedSenderError("truncated sender certificate")
            value = int.from_bytes(data[pos : pos + size], "little")
            pos += size
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise InvalidSealedSenderError("truncated sender certificate")
            value = data[pos : pos + length]
            pos += length
        else:
            raise InvalidSealedSenderError("unsupported wire type in sender certificate")
        if number == 0:
            raise InvalidSealedSenderError("field number 0 in sender certificate")
        expected = _CERTIFICATE_WIRE_TYPES.get(number)
        if expected is None:
            continue
        if wire_type != expected:
            raise InvalidSealedSenderError(f"field {number} of sender certificate has wrong type")
        values[number] = value
        if number in _ONEOF_PARTNER:
            values.pop(_ONEOF_PARTNER[number], None)

    def blob(number: int) -> bytes | None:
        raw = values.get(number)
        return raw if isinstance(raw, bytes) else None

    def text(number: int) -> str | None:
        raw = blob(number)
        try:
            return None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSealedSenderError("sender certificate text is not UTF-8") from exc

    def integer(number: int) -> int | None:
        raw = values.get(number)
        return raw if isinstance(raw, int) else None

    device, expires, signer_id = integer(2), integer(3), integer(8)
    return _SenderCertificateData(
        sender_e164=text(1),
        sender_device=None if device is None else uint(device),
        expires=None if expires is None else fixed64(expires),
        identity_key=blob(4),
        signer_certificate=blob(5),
        signer_id=None if signer_id is None else uint(signer_id),
        uuid_string=text(6),
        uuid_bytes=blob(7),
    )


def _parse_signed(data: bytes, what: str) -> tuple[bytes, bytes]:
    try:
        outer = _SignedProto.loads(data)
    except Exception as exc:  # pure-protobuf raises several types on malformed input
        raise InvalidSealedSenderError(f"malformed {what}") from exc
    if outer.certificate is None or outer.signature is None:
        raise InvalidSealedSenderError(f"{what} lacks its body or signature")
    return outer.certificate, outer.signature


def _public_key(data: bytes | None, what: str) -> PublicKey:
    if data is None:
        raise InvalidSealedSenderError(f"{what} lacks its key")
    try:
        return PublicKey.deserialize(data)
    except InvalidKeyError as exc:
        raise InvalidSealedSenderError(f"{what} has an invalid key") from exc


# --- server certificate -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A server signing key, certified by a trust root.

    Attributes:
        key_id: the certificate's id (what a sender certificate may reference, and what can be
            revoked).
        key: the server's public signing key.
        certificate: the signed bytes (``ServerCertificate.Certificate``).
        signature: the trust root's XEdDSA signature over `certificate`.
        serialized: the exact wire bytes.
    """

    key_id: int
    key: PublicKey
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def create(cls, key_id: int, key: PublicKey, trust_root: PrivateKey, rng: Rng) -> Self:
        """Certifies a server key with the trust root's private key (done offline, once)."""
        if not 0 <= key_id <= _MAX_UINT32:
            raise InvalidArgumentError("key id must fit in 32 bits")
        certificate = bytes(_ServerCertificateData(uint(key_id), key.serialize()))
        signature = trust_root.calculate_signature(certificate, rng)
        serialized = bytes(_SignedProto(certificate, signature))
        return cls(key_id, key, certificate, signature, serialized)

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a server certificate (its signature is checked by `validate`).

        Raises:
            InvalidSealedSenderError: malformed, or a field is missing.
        """
        certificate, signature = _parse_signed(data, "server certificate")
        try:
            body = _ServerCertificateData.loads(certificate)
        except Exception as exc:  # pure-protobuf raises several types on malformed input
            raise InvalidSealedSenderError("malformed server certificate body") from exc
        if body.id is None or body.id > _MAX_UINT32:
            raise InvalidSealedSenderError("server certificate lacks its id")
        key = _public_key(body.key, "server certificate")
        return cls(int(body.id), key, certificate, signature, bytes(data))

    def validate(
        self,
        trust_root: PublicKey,
        *,
        revoked_key_ids: frozenset[int] = REVOKED_SERVER_CERTIFICATE_KEY_IDS,
    ) -> bool:
        """Whether `trust_root` signed this certificate and its id is not revoked."""
        if self.key_id in revoked_key_ids:
            return False
        return trust_root.verify_signature(self.certificate, self.signature)


# --- sender certificate -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderCertificate:
    """Who sent a sealed message: account, device and identity key, vouched for by the server.

    Attributes:
        sender_uuid: the sender account's UUID as text (kurir: the internal account id).
        sender_e164: a phone number, only for wire compatibility (kurir leaves it None).
        sender_device_id: the sending device.
        key: the sender's identity public key.
        expiration: milliseconds since 1970 after which the certificate is refused (the wire
            value; `expires_at` is the same as a datetime).
        signer: the embedded server certificate, or the id of a server certificate the
            receiver already knows.
        certificate: the signed bytes (``SenderCertificate.Certificate``).
        signature: the server key's XEdDSA signature over `certificate`.
        serialized: the exact wire bytes.
    """

    sender_uuid: str
    sender_e164: str | None
    sender_device_id: DeviceId
    key: PublicKey
    expiration: int
    signer: ServerCertificate | int
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        sender_uuid: str,
        sender_device_id: DeviceId,
        key: PublicKey,
        expiration: datetime,
        signer: ServerCertificate,
        signer_key: PrivateKey,
        rng: Rng,
        sender_e164: str | None = None,
    ) -> Self:
        """Issues a certificate (the server does this for an authenticated device).

        Args:
            sender_uuid: the sender account's UUID as text.
            sender_device_id: the sender's device.
            key: the sender's identity public key.
            expiration: when the certificate stops being valid (timezone-aware).
            signer: the server certificate whose key signs.
            signer_key: the private half of ``signer.key``.
            rng: randomness for the signature.
            sender_e164: optional phone number (kurir passes none).
        """
        expiration_ms = to_millis(expiration)
        if not 0 <= expiration_ms <= _MAX_UINT64:
            raise InvalidArgumentError("expiration must be after 1970 and fit in 64 bits")
        certificate = bytes(
            _SenderCertificateData(
                sender_e164=sender_e164,
                sender_device=uint(sender_device_id),
                expires=fixed64(expiration_ms),
                identity_key=key.serialize(),
                signer_certificate=signer.serialized,
                uuid_string=sender_uuid,
            )
        )
        signature = signer_key.calculate_signature(certificate, rng)
        serialized = bytes(_SignedProto(certificate, signature))
        return cls(
            sender_uuid,
            sender_e164,
            sender_device_id,
            key,
            expiration_ms,
            signer,
            certificate,
            signature,
            serialized,
        )

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a sender certificate (its signatures are checked by `validate`).

        Raises:
            InvalidSealedSenderError: malformed, or a field is missing or out of range.
        """
        certificate, signature = _parse_signed(data, "sender certificate")
        body = _decode_sender_certificate_data(certificate)
        if body.sender_device is None or not 1 <= body.sender_device <= MAX_DEVICE_ID:
            raise InvalidSealedSenderError("sender certificate lacks a valid device id")
        if body.expires is None:
            raise InvalidSealedSenderError("sender certificate lacks its expiration")
        signer: ServerCertificate | int
        if body.signer_certificate is not None:
            signer = ServerCertificate.deserialize(body.signer_certificate)
        elif body.signer_id is not None and body.signer_id <= _MAX_UINT32:
            signer = int(body.signer_id)
        else:
            raise InvalidSealedSenderError("sender certificate lacks its signer")
        if body.uuid_string is not None:
            sender_uuid = body.uuid_string
        elif body.uuid_bytes is not None and len(body.uuid_bytes) == 16:
            sender_uuid = str(uuid.UUID(bytes=body.uuid_bytes))
        else:
            raise InvalidSealedSenderError("sender certificate lacks its sender")
        return cls(
            sender_uuid=sender_uuid,
            sender_e164=body.sender_e164,
            sender_device_id=DeviceId(int(body.sender_device)),
            key=_public_key(body.identity_key, "sender certificate"),
            expiration=int(body.expires),
            signer=signer,
            certificate=certificate,
            signature=signature,
            serialized=bytes(data),
        )

    @property
    def expires_at(self) -> datetime:
        """`expiration` as a timezone-aware datetime."""
        return _EPOCH + timedelta(milliseconds=self.expiration)

    @property
    def sender_address(self) -> ProtocolAddress:
        """The sender as a protocol address (account UUID text, device)."""
        return ProtocolAddress(self.sender_uuid, self.sender_device_id)

    def signer_certificate(
        self, known: Mapping[int, ServerCertificate] | None = None
    ) -> ServerCertificate | None:
        """The server certificate that signed this one: embedded, or looked up in `known`."""
        if isinstance(self.signer, ServerCertificate):
            return self.signer
        return None if known is None else known.get(self.signer)

    def validate(
        self,
        trust_root: PublicKey,
        now: datetime,
        *,
        known_server_certificates: Mapping[int, ServerCertificate] | None = None,
        revoked_key_ids: frozenset[int] = REVOKED_SERVER_CERTIFICATE_KEY_IDS,
    ) -> bool:
        """Whether the certificate is valid at `now` under `trust_root`; see the module doc."""
        return (
            self.validation_failure(
                (trust_root,),
                now,
                known_server_certificates=known_server_certificates,
                revoked_key_ids=revoked_key_ids,
            )
            is None
        )

    def validation_failure(
        self,
        trust_roots: Iterable[PublicKey],
        now: datetime,
        *,
        known_server_certificates: Mapping[int, ServerCertificate] | None = None,
        revoked_key_ids: frozenset[int] = REVOKED_SERVER_CERTIFICATE_KEY_IDS,
    ) -> str | None:
        """Says why the certificate is not valid at `now`, or None when it is.

        Every trust root is tried (none is skipped early), as libsignal does, so timing does not
        tell which root signed.

        Args:
            trust_roots: the trust roots the client ships.
            now: the current time (timezone-aware), from the injected clock.
            known_server_certificates: server certificates a sender certificate may reference by
                id instead of embedding them.
            revoked_key_ids: server certificate ids to refuse.
        """
        server = self.signer_certificate(known_server_certificates)
        if server is None:
            return f"unknown server certificate id {self.signer}"
        any_root = False
        for root in trust_roots:
            ok = server.validate(root, revoked_key_ids=revoked_key_ids)
            any_root = any_root | ok
        if not any_root:
            return "server certificate is revoked or not signed by a trust root"
        if not server.key.verify_signature(self.certificate, self.signature):
            return "sender certificate is not signed by the server"
        if to_millis(now) > self.expiration:
            return "sender certificate has expired"
        return None

    def is_sender(self, account_uuid: str, device_id: DeviceId, e164: str | None = None) -> bool:
        """Whether this certificate names the given device (by UUID, or by E.164 if given)."""
        same_uuid = hmac.compare_digest(self.sender_uuid.encode(), account_uuid.encode())
        same_e164 = e164 is not None and self.sender_e164 is not None and self.sender_e164 == e164
        return (same_uuid or same_e164) and self.sender_device_id == device_id
