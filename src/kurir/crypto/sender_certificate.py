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
from typing import Final, Self

from kurir.crypto import protos
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


# --- libsignal proto/sealed_sender.proto (proto2), through kurir.crypto.protos ---------------


@dataclass(frozen=True, slots=True)
class _SenderCertificateData:
    # SenderCertificate.Certificate with absent fields as None (the last member of each oneof
    # wins, as in prost: upb keeps the oneof that way).
    sender_e164: str | None
    sender_device: int | None
    expires: int | None
    identity_key: bytes | None
    signer_certificate: bytes | None
    signer_id: int | None
    uuid_string: str | None
    uuid_bytes: bytes | None


def _decode_sender_certificate_data(data: bytes) -> _SenderCertificateData:
    try:
        proto = protos.parse(protos.SenderCertificateData, data)
    except ValueError as exc:
        raise InvalidSealedSenderError("malformed sender certificate") from exc
    has = proto.HasField

    def text(name: str) -> str | None:
        if not has(name):
            return None
        try:
            return bytes(getattr(proto, name)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSealedSenderError("sender certificate text is not UTF-8") from exc

    return _SenderCertificateData(
        sender_e164=text("sender_e164"),
        sender_device=proto.sender_device if has("sender_device") else None,
        expires=proto.expires if has("expires") else None,
        identity_key=proto.identity_key if has("identity_key") else None,
        signer_certificate=proto.signer_certificate if has("signer_certificate") else None,
        signer_id=proto.signer_id if has("signer_id") else None,
        uuid_string=text("uuid_string"),
        uuid_bytes=proto.uuid_bytes if has("uuid_bytes") else None,
    )


def _signed(certificate: bytes, signature: bytes) -> bytes:
    # ServerCertificate and SenderCertificate share this outer shape.
    return bytes(
        protos.ServerCertificateProto(
            certificate=certificate, signature=signature
        ).SerializeToString()
    )


def _parse_signed(data: bytes, what: str) -> tuple[bytes, bytes]:
    try:
        outer = protos.parse(protos.ServerCertificateProto, data)
    except ValueError as exc:
        raise InvalidSealedSenderError(f"malformed {what}") from exc
    if not (outer.HasField("certificate") and outer.HasField("signature")):
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
        certificate = bytes(
            protos.ServerCertificateData(id=key_id, key=key.serialize()).SerializeToString()
        )
        signature = trust_root.calculate_signature(certificate, rng)
        serialized = _signed(certificate, signature)
        return cls(key_id, key, certificate, signature, serialized)

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a server certificate (its signature is checked by `validate`).

        Raises:
            InvalidSealedSenderError: malformed, or a field is missing.
        """
        certificate, signature = _parse_signed(data, "server certificate")
        try:
            body = protos.parse(protos.ServerCertificateData, certificate)
        except ValueError as exc:
            raise InvalidSealedSenderError("malformed server certificate body") from exc
        if not body.HasField("id"):
            raise InvalidSealedSenderError("server certificate lacks its id")
        key = _public_key(body.key if body.HasField("key") else None, "server certificate")
        return cls(body.id, key, certificate, signature, bytes(data))

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
        body = protos.SenderCertificateData(
            sender_device=sender_device_id,
            expires=expiration_ms,
            identity_key=key.serialize(),
            signer_certificate=signer.serialized,
            uuid_string=sender_uuid.encode("utf-8"),
        )
        if sender_e164 is not None:
            body.sender_e164 = sender_e164.encode("utf-8")
        certificate = bytes(body.SerializeToString())
        signature = signer_key.calculate_signature(certificate, rng)
        serialized = _signed(certificate, signature)
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
