"""Error codes and exceptions of the kurir wire protocol.

This module owns the closed set of error codes a peer may see (HTTP bodies, WebSocket
`result`/`error` frames) and the exception tree raised by the pure codecs in
:mod:`kurir.wire`. It knows nothing of transports or storage.

Exception tree::

    WireError                      (base; carries a code and a peer-safe message)
      AddressError                 an address or identifier does not parse
      FrameError                   a WebSocket frame is malformed or too large
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AddressError", "ErrorCode", "FrameError", "WireError"]


class ErrorCode(StrEnum):
    """Every error code kurir puts on the wire (documented in docs/protocol.md §Errors)."""

    INVALID_REQUEST = "invalid_request"
    INVALID_ADDRESS = "invalid_address"
    UNKNOWN_APP = "unknown_app"
    WRONG_APP = "wrong_app"
    INVALID_CODE = "invalid_code"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"
    IDENTITY_KEY_CHANGED = "identity_key_changed"
    KEYS_NOT_SET = "keys_not_set"
    UNKNOWN_ACCOUNT = "unknown_account"
    MISMATCHED_DEVICES = "mismatched_devices"
    STALE_DEVICES = "stale_devices"
    MAILBOX_FULL = "mailbox_full"
    TOO_MANY_DEVICES = "too_many_devices"
    GROUP_FULL = "group_full"
    NOT_A_MEMBER = "not_a_member"
    MALFORMED_FRAME = "malformed_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    INTERNAL = "internal"


class WireError(Exception):
    """Base of the wire errors: a code from :class:`ErrorCode` and a message safe to show a peer.

    Args:
        code: The machine-readable error code.
        message: Human-readable text; must never contain secrets or identifiers of others.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AddressError(WireError):
    """An address (`app:identifier`) or an identifier does not parse or normalise."""

    def __init__(self, message: str, *, code: ErrorCode = ErrorCode.INVALID_ADDRESS) -> None:
        super().__init__(code, message)


class FrameError(WireError):
    """A WebSocket frame is malformed (``malformed_frame``) or oversized (``frame_too_large``).

    Attributes:
        request_id: The ``id`` of a recognisable but invalid ``send`` frame (answered with a
            failed ``result``, code ``invalid_request``), else ``None`` (the server closes).
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.request_id: int | None = None
