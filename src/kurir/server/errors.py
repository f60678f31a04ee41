"""Refusals the services raise: the peer's fault, carrying a wire error code and data.

Transports map a :class:`Refused` to an HTTP status (see :mod:`kurir.server.http.app`) or a
failed WebSocket ``result``. Anything else escaping a service is our bug: it is logged
without identifiers and the peer sees only ``internal``.

Tree::

    Refused(code, message)
      RateLimited(retry_after_s)
      MismatchedDevices(missing, extra)
      StaleDevices(stale)
"""

from __future__ import annotations

from collections.abc import Sequence

from kurir.wire.errors import ErrorCode

__all__ = ["MismatchedDevices", "RateLimited", "Refused", "StaleDevices"]


class Refused(Exception):
    """A request the server refuses; nothing was changed.

    Args:
        code: The wire error code.
        message: Peer-safe text (no secrets, no other users' identifiers).
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RateLimited(Refused):
    """Too many requests of this kind; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, "too many requests, slow down")
        self.retry_after_s = retry_after_s


class MismatchedDevices(Refused):
    """The send did not address exactly the recipient's current devices."""

    def __init__(self, missing: Sequence[int], extra: Sequence[int]) -> None:
        if not missing and not extra:
            raise ValueError("MismatchedDevices needs missing or extra devices")
        super().__init__(ErrorCode.MISMATCHED_DEVICES, "the device list is out of date")
        self.missing = sorted(missing)
        self.extra = sorted(extra)


class StaleDevices(Refused):
    """Some addressed devices were re-registered (registration id differs)."""

    def __init__(self, stale: Sequence[int]) -> None:
        if not stale:
            raise ValueError("StaleDevices needs at least one device")
        super().__init__(ErrorCode.STALE_DEVICES, "some sessions are stale")
        self.stale = sorted(stale)
