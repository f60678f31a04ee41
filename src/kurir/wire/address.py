"""Addresses: how users name each other across apps (`app:identifier`).

This module owns parsing and normalising addresses and identifiers. It is pure (no I/O) and
shared by client and server. It does not know which apps exist: callers pass the mapping of
app id to identifier kind (the server's app catalogue, or the client's copy of it).

Identifier kinds (docs/protocol.md §Addresses):

* ``phone``: an E.164 number. Input must start with ``+``; spaces, dashes, dots and
  parentheses are ignored; the number must be a *possible* number for its country
  (libphonenumber's ``is_possible_number``) and is normalised to E.164, e.g. ``+6281234567890``.
* ``account``: 1 to 20 decimal digits, kept as given (leading zeros are refused).
* ``handle``: ``@`` followed by 1 to 30 of ``[a-z0-9._]``; input is lower-cased first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import phonenumbers

from kurir.wire.errors import AddressError, ErrorCode
from kurir.wire.limits import MAX_ADDRESS_LENGTH

__all__ = [
    "Address",
    "IdentifierKind",
    "normalize_identifier",
    "parse_address",
    "split_address",
    "valid_app_id",
]

_APP_ID: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ACCOUNT: Final = re.compile(r"[1-9][0-9]{0,19}")
_HANDLE: Final = re.compile(r"@[a-z0-9._]{1,30}")
_PHONE_CHARS: Final = re.compile(r"\+[0-9 ().-]{1,40}")


class IdentifierKind(StrEnum):
    """The kind of user identifier an app uses."""

    PHONE = "phone"
    ACCOUNT = "account"
    HANDLE = "handle"


@dataclass(frozen=True, slots=True)
class Address:
    """A normalised address. Construct it with :func:`parse_address`, not directly.

    Attributes:
        app: The app id, e.g. ``whatsapp``.
        identifier: The normalised identifier, e.g. ``+6281234567890``.
    """

    app: str
    identifier: str

    def __str__(self) -> str:
        return f"{self.app}:{self.identifier}"


def valid_app_id(app: str) -> bool:
    """Tell whether ``app`` has the syntax of an app id (``[a-z][a-z0-9_-]{0,31}``)."""
    return _APP_ID.fullmatch(app) is not None


def split_address(text: str) -> tuple[str, str]:
    """Split ``app:identifier`` at the first colon without normalising.

    Raises:
        AddressError: ``text`` is too long, has no colon, or the app id is malformed.
    """
    if len(text) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"address longer than {MAX_ADDRESS_LENGTH} characters")
    app, sep, raw = text.partition(":")
    if not sep:
        raise AddressError("address must have the form app:identifier")
    if not valid_app_id(app):
        raise AddressError("malformed app id")
    return app, raw


def normalize_identifier(kind: IdentifierKind, raw: str) -> str:
    """Normalise a raw identifier of the given kind.

    Args:
        kind: The identifier kind of the app.
        raw: The identifier as typed by a user.

    Returns:
        The canonical identifier.

    Raises:
        AddressError: ``raw`` is not a valid identifier of that kind.
    """
    match kind:
        case IdentifierKind.PHONE:
            return _normalize_phone(raw)
        case IdentifierKind.ACCOUNT:
            if _ACCOUNT.fullmatch(raw) is None:
                raise AddressError("account identifier must be 1 to 20 digits, no leading zero")
            return raw
        case IdentifierKind.HANDLE:
            handle = raw.lower()
            if _HANDLE.fullmatch(handle) is None:
                raise AddressError("handle must be @ followed by 1 to 30 of a-z 0-9 . _")
            return handle


def _normalize_phone(raw: str) -> str:
    if _PHONE_CHARS.fullmatch(raw) is None:
        raise AddressError("phone number must start with + and contain only digits")
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise AddressError("phone number does not parse") from None
    if not phonenumbers.is_possible_number(number):
        raise AddressError("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_address(text: str, apps: Mapping[str, IdentifierKind]) -> Address:
    """Parse and normalise ``app:identifier``.

    Args:
        text: The address as given, e.g. ``whatsapp:+62 812-3456-7890``.
        apps: The known apps and their identifier kinds.

    Returns:
        The normalised address, e.g. ``whatsapp:+6281234567890``.

    Raises:
        AddressError: Malformed address (code ``invalid_address``) or unknown app
            (code ``unknown_app``).
    """
    app, raw = split_address(text)
    kind = apps.get(app)
    if kind is None:
        raise AddressError("unknown app", code=ErrorCode.UNKNOWN_APP)
    return Address(app, normalize_identifier(kind, raw))
