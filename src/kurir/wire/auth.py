"""Device credentials on the wire: the HTTP Basic ``Authorization`` header and passwords.

This module owns the format ``Basic base64("<account_uuid>.<device_id>:<password>")``
(RFC 7617) and the password encoding (base64url of 16 to 64 random bytes, RFC 4648 §5).
It is pure; it never hashes or stores anything.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from kurir.wire.errors import ErrorCode, WireError
from kurir.wire.limits import MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES

__all__ = [
    "Credentials",
    "decode_password",
    "encode_basic_auth",
    "encode_password",
    "parse_basic_auth",
]

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_MAX_HEADER: Final = 512


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a device presents: its account, its device id and its password."""

    account_id: UUID
    device_id: int
    password: str = field(repr=False)


def encode_password(raw: bytes) -> str:
    """Encode random bytes as a device password (base64url without padding).

    Raises:
        ValueError: ``raw`` is shorter than 16 or longer than 64 bytes.
    """
    if not MIN_PASSWORD_BYTES <= len(raw) <= MAX_PASSWORD_BYTES:
        raise ValueError("password must be 16 to 64 random bytes")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_password(text: str) -> bytes:
    """Decode a device password to its bytes.

    Raises:
        WireError: Code ``invalid_request`` when it is not base64url of 16 to 64 bytes.
    """
    if _B64URL.fullmatch(text) is None:
        raise WireError(ErrorCode.INVALID_REQUEST, "password must be base64url")
    stripped = text.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise WireError(ErrorCode.INVALID_REQUEST, "password must be base64url") from None
    if not MIN_PASSWORD_BYTES <= len(raw) <= MAX_PASSWORD_BYTES:
        raise WireError(ErrorCode.INVALID_REQUEST, "password must encode 16 to 64 bytes")
    return raw


def encode_basic_auth(account_id: UUID, device_id: int, password: str) -> str:
    """Build the ``Authorization`` header value for a device."""
    user_pass = f"{account_id}.{device_id}:{password}".encode()
    return "Basic " + base64.b64encode(user_pass).decode("ascii")


def parse_basic_auth(header: str) -> Credentials:
    """Parse an ``Authorization`` header value.

    Raises:
        WireError: Code ``unauthorized`` when the header is not well-formed Basic auth
            for ``<uuid>.<device>:<password>``.
    """
    bad = WireError(ErrorCode.UNAUTHORIZED, "malformed Authorization header")
    if len(header) > _MAX_HEADER:
        raise bad
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        raise bad
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    user, sep, password = decoded.partition(":")
    account_text, dot, device_text = user.rpartition(".")
    if not sep or not dot or not password or not device_text.isdigit():
        raise bad
    try:
        account_id = UUID(account_text)
    except ValueError:
        raise bad from None
    if str(account_id) != account_text.lower() or len(device_text) > 10:
        raise bad
    device_id = int(device_text)
    if not 1 <= device_id <= 2**31 - 1:
        raise bad
    return Credentials(account_id, device_id, password)
