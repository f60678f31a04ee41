"""Verifying that a registrant controls an address (the pluggable verifier).

This module owns the :class:`Verifier` Protocol and the development verifier. A production
deployment plugs in a verifier that sends SMS or e-mail codes; the development one accepts
the fixed code ``123456`` for any address that asked for a code in the last 10 minutes, and
says so loudly at startup.
"""

from __future__ import annotations

import hmac
from typing import Final, Protocol

from kurir.server.types import Clock
from kurir.wire.address import Address

__all__ = ["DEV_CODE", "DevVerifier", "Verifier"]

DEV_CODE: Final = "123456"
_CODE_TTL_MS: Final = 10 * 60 * 1000
_MAX_PENDING: Final = 100_000


class Verifier(Protocol):
    """Sends verification codes and checks them."""

    async def start(self, address: Address) -> None:
        """Send a code to ``address`` (or arrange that one can be checked)."""
        ...

    async def check(self, address: Address, code: str) -> bool:
        """Tell whether ``code`` is valid for ``address``; a valid code is used up."""
        ...


class DevVerifier:
    """Development verifier: the code is always ``123456``. Never use it in production."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: dict[Address, int] = {}

    async def start(self, address: Address) -> None:
        """Remember that ``address`` asked for a code."""
        now = self._clock.now_ms()
        if len(self._pending) >= _MAX_PENDING:
            self._pending = {a: t for a, t in self._pending.items() if t > now}
        self._pending[address] = now + _CODE_TTL_MS

    async def check(self, address: Address, code: str) -> bool:
        """Accept ``123456`` once per request for a code, within 10 minutes."""
        expires = self._pending.get(address)
        if expires is None or expires <= self._clock.now_ms():
            return False
        if not hmac.compare_digest(code.encode(), DEV_CODE.encode()):
            return False
        del self._pending[address]
        return True
