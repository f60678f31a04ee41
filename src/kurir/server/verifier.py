"""Verifying that a registrant controls an address (the pluggable verifier).

This module owns the :class:`Verifier` Protocol and the development verifier. A production
deployment plugs in a verifier that sends SMS or e-mail codes; the development one accepts
the fixed code ``123456`` for any address that asked for a code in the last 10 minutes, and
says so loudly at startup.

The development verifier keeps its pending codes in the storage engine's shared
:class:`~kurir.server.storage.codes.CodeStore` (a digest per address, never the address or
the code), so a code requested through one node is accepted by any other (issue 7). A
production verifier that generates its own codes should keep them the same way
(:func:`~kurir.server.storage.codes.code_digest`, a few attempts per code).
"""

from __future__ import annotations

from typing import Final, Protocol

from kurir.server.storage.codes import (
    CodePurpose,
    CodeStore,
    PendingCode,
    code_digest,
    subject_digest,
)
from kurir.server.storage.codes_memory import MemoryCodeStore
from kurir.server.types import Clock
from kurir.wire.address import Address

__all__ = ["DEV_CODE", "MAX_ATTEMPTS", "DevVerifier", "Verifier"]

DEV_CODE: Final = "123456"
MAX_ATTEMPTS: Final = 5
"""Wrong codes tried against one pending verification code before it is gone."""
_CODE_TTL_MS: Final = 10 * 60 * 1000
_PURPOSE: Final = CodePurpose.VERIFICATION


class Verifier(Protocol):
    """Sends verification codes and checks them."""

    async def start(self, address: Address) -> None:
        """Send a code to ``address`` (or arrange that one can be checked)."""
        ...

    async def check(self, address: Address, code: str) -> bool:
        """Tell whether ``code`` is valid for ``address``; a valid code is used up."""
        ...


class DevVerifier:
    """Development verifier: the code is always ``123456``. Never use it in production.

    Args:
        clock: Time source.
        codes: Where pending codes are kept; the storage engine's store, so that every node
            accepts a code requested through any node. Default: this process's memory
            (one node only).
    """

    def __init__(self, clock: Clock, codes: CodeStore | None = None) -> None:
        self._clock = clock
        self._codes: CodeStore = codes if codes is not None else MemoryCodeStore()

    async def start(self, address: Address) -> None:
        """Remember that ``address`` asked for a code (a new request replaces the last)."""
        now = self._clock.now_ms()
        subject = subject_digest(_PURPOSE, str(address))
        digest = code_digest(_PURPOSE, subject, DEV_CODE)
        pending = PendingCode(_PURPOSE, subject, digest, None, now, now + _CODE_TTL_MS)
        await self._codes.issue(pending, max_per_owner=1)

    async def check(self, address: Address, code: str) -> bool:
        """Accept ``123456`` once per request for a code, within 10 minutes, unless
        :data:`MAX_ATTEMPTS` wrong codes were tried first."""
        subject = subject_digest(_PURPOSE, str(address))
        redeemed = await self._codes.redeem(
            _PURPOSE,
            subject,
            code_digest(_PURPOSE, subject, code),
            now=self._clock.now_ms(),
            max_attempts=MAX_ATTEMPTS,
        )
        return redeemed is not None
