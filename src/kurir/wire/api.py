"""HTTP request and response bodies of the kurir API (JSON via msgspec).

This module owns the typed JSON bodies of every HTTP route (docs/protocol.md §HTTP) and the
JSON codec for them. The server generates its OpenAPI 3.1 document from these types; clients
use them to build requests and decode answers. Byte fields travel as standard base64 with
padding (RFC 4648 §4), which msgspec encodes and checks.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeVar
from uuid import UUID

import msgspec

from kurir.wire.errors import ErrorCode, WireError
from kurir.wire.limits import (
    MAX_ADDRESS_LENGTH,
    MAX_DEVICE_NAME_LENGTH,
    MAX_DIRECTORY_ADDRESSES,
    MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
    MAX_REGISTRATION_ID,
)

__all__ = [
    "AppInfo",
    "AppList",
    "DeviceBundle",
    "DeviceInfo",
    "DeviceList",
    "DirectoryEntry",
    "DirectoryRequest",
    "DirectoryResponse",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "KemPreKey",
    "KeyCounts",
    "KeyUpload",
    "LinkCode",
    "LinkRequest",
    "PreKey",
    "PreKeyBundle",
    "RegistrationRequest",
    "RegistrationResponse",
    "SignedPreKey",
    "VerificationRequest",
    "decode_json",
    "encode_json",
]

EC_PUBLIC_KEY_BYTES: Final = 33
"""libsignal's serialized Curve25519 public key: type byte 0x05 and 32 bytes."""
SIGNATURE_BYTES: Final = 64
"""An XEdDSA signature."""
MAX_KEM_PUBLIC_KEY_BYTES: Final = 2048
"""Upper bound on a serialized KEM public key (ML-KEM-1024 is 1 + 1568 bytes)."""

AddressText = Annotated[str, msgspec.Meta(min_length=3, max_length=MAX_ADDRESS_LENGTH)]
KeyId = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
EcPublicKey = Annotated[
    bytes, msgspec.Meta(min_length=EC_PUBLIC_KEY_BYTES, max_length=EC_PUBLIC_KEY_BYTES)
]
KemPublicKey = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_KEM_PUBLIC_KEY_BYTES)]
Signature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]
RegistrationId = Annotated[int, msgspec.Meta(ge=1, le=MAX_REGISTRATION_ID)]
DeviceNumber = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class ErrorDetail(msgspec.Struct, frozen=True):
    """A machine-readable ``code`` (see :class:`kurir.wire.errors.ErrorCode`) and a message."""

    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every non-2xx response."""

    error: ErrorDetail


class Health(msgspec.Struct, frozen=True):
    """``GET /health``."""

    status: str


class AppInfo(msgspec.Struct, frozen=True):
    """One app of the catalogue, as public information (no client key)."""

    id: str
    display_name: str
    identifier_kind: str
    colour: str


class AppList(msgspec.Struct, frozen=True):
    """``GET /v1/apps``."""

    apps: list[AppInfo]


class VerificationRequest(msgspec.Struct, frozen=True):
    """``POST /v1/verification``: ask the verifier to send a code to this address."""

    address: AddressText


class RegistrationRequest(msgspec.Struct, frozen=True):
    """``POST /v1/accounts``: register (or re-register) the address; creates device 1.

    ``password`` is base64url (RFC 4648 §5, padding optional) of 16 to 64 random bytes.
    """

    address: AddressText
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    password: Annotated[str, msgspec.Meta(min_length=22, max_length=88)]
    registration_id: RegistrationId
    device_name: Annotated[str, msgspec.Meta(max_length=MAX_DEVICE_NAME_LENGTH)] | None = None


class RegistrationResponse(msgspec.Struct, frozen=True):
    """The new credentials' user part: ``<account_id>.<device_id>``."""

    account_id: UUID
    device_id: int


class LinkCode(msgspec.Struct, frozen=True):
    """``POST /v1/devices/link-code``: a single-use code that links one new device.

    The primary device passes ``code`` to the new device out of band (e.g. a QR code, together
    with the identity key pair, which the server never sees).
    """

    code: str
    expires: int


class LinkRequest(msgspec.Struct, frozen=True):
    """``POST /v1/devices/link``: the new device's credentials, as in registration."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=22, max_length=88)]
    registration_id: RegistrationId
    device_name: Annotated[str, msgspec.Meta(max_length=MAX_DEVICE_NAME_LENGTH)] | None = None


class SignedPreKey(msgspec.Struct, frozen=True):
    """A signed EC prekey (X3DH/PQXDH ``SPK``)."""

    key_id: KeyId
    public_key: EcPublicKey
    signature: Signature


class PreKey(msgspec.Struct, frozen=True):
    """A one-time EC prekey (``OPK``)."""

    key_id: KeyId
    public_key: EcPublicKey


class KemPreKey(msgspec.Struct, frozen=True):
    """A signed KEM prekey (PQXDH ``PQSPK``/``PQOPK``)."""

    key_id: KeyId
    public_key: KemPublicKey
    signature: Signature


class KeyUpload(msgspec.Struct, frozen=True, omit_defaults=True):
    """``PUT /v1/keys``. The first upload of a device needs ``identity_key``,
    ``signed_prekey`` and ``pq_last_resort_prekey``; later uploads may carry any part.

    A given one-time list replaces the device's stored list of that kind.
    """

    identity_key: EcPublicKey | None = None
    signed_prekey: SignedPreKey | None = None
    pq_last_resort_prekey: KemPreKey | None = None
    one_time_prekeys: (
        Annotated[list[PreKey], msgspec.Meta(max_length=MAX_ONE_TIME_PREKEYS_PER_UPLOAD)] | None
    ) = None
    pq_one_time_prekeys: (
        Annotated[list[KemPreKey], msgspec.Meta(max_length=MAX_ONE_TIME_PREKEYS_PER_UPLOAD)] | None
    ) = None


class KeyCounts(msgspec.Struct, frozen=True):
    """``GET /v1/keys/count``: one-time prekeys left for the calling device."""

    ec: int
    pq: int


class DeviceBundle(msgspec.Struct, frozen=True):
    """The keys of one device in a :class:`PreKeyBundle`."""

    device_id: int
    registration_id: int
    signed_prekey: SignedPreKey
    prekey: PreKey | None
    pq_prekey: KemPreKey


class PreKeyBundle(msgspec.Struct, frozen=True):
    """``GET /v1/keys/{account_id}/{device_id|*}``."""

    identity_key: bytes
    devices: list[DeviceBundle]


class DirectoryRequest(msgspec.Struct, frozen=True):
    """``POST /v1/directory``."""

    addresses: Annotated[list[str], msgspec.Meta(max_length=MAX_DIRECTORY_ADDRESSES)]


class DirectoryEntry(msgspec.Struct, frozen=True):
    """A registered address; ``address`` is normalised."""

    address: str
    account_id: UUID
    devices: list[int]


class DirectoryResponse(msgspec.Struct, frozen=True):
    """Registered addresses only; unknown or invalid ones are omitted."""

    results: list[DirectoryEntry]


class DeviceInfo(msgspec.Struct, frozen=True):
    """One device of the calling account."""

    device_id: int
    name: str | None
    registration_id: int
    created: int


class DeviceList(msgspec.Struct, frozen=True):
    """``GET /v1/devices``."""

    devices: list[DeviceInfo]


T = TypeVar("T")

_json_encoder: Final = msgspec.json.Encoder()


def encode_json(value: msgspec.Struct) -> bytes:
    """Encode a body struct to JSON."""
    return _json_encoder.encode(value)


def decode_json(data: bytes, body_type: type[T]) -> T:
    """Decode and validate a JSON body.

    Raises:
        WireError: Code ``invalid_request`` with msgspec's path-bearing explanation.
    """
    try:
        return msgspec.json.decode(data, type=body_type)
    except msgspec.ValidationError as exc:
        raise WireError(ErrorCode.INVALID_REQUEST, str(exc)) from None
    except (msgspec.DecodeError, ValueError):
        raise WireError(ErrorCode.INVALID_REQUEST, "body is not valid JSON") from None
