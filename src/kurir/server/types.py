"""Typed identifiers and the injected world (clock, randomness) of the server.

This module owns the server's ``NewType`` ids and the :class:`Clock` / :class:`Rng`
Protocols that every service receives from the composition root; nothing in the server
reads the system clock or randomness except the two system implementations here.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import NewType, Protocol
from uuid import UUID

__all__ = [
    "AccountId",
    "Clock",
    "DeviceId",
    "DeviceRef",
    "Rng",
    "SystemClock",
    "SystemRng",
    "new_account_id",
]

AccountId = NewType("AccountId", UUID)
"""The server-chosen random id of an account."""
DeviceId = NewType("DeviceId", int)
"""A device of an account: 1 is the primary."""

PRIMARY_DEVICE = DeviceId(1)


@dataclass(frozen=True, slots=True, order=True)
class DeviceRef:
    """One device of one account: the address of a mailbox."""

    account_id: AccountId
    device_id: DeviceId

    def __hash__(self) -> int:
        # what the generated hash would be, less a Python-level UUID.__hash__ per call: refs
        # key the registry and every enqueue's result, several lookups per message
        return hash((self.account_id.int, self.device_id))


class Clock(Protocol):
    """Wall-clock time in milliseconds since the Unix epoch."""

    def now_ms(self) -> int:
        """Return the current time in milliseconds."""
        ...


class Rng(Protocol):
    """A cryptographically secure source of random bytes."""

    def token_bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Return ``time.time()`` in milliseconds."""
        return time.time_ns() // 1_000_000


class SystemRng:
    """The operating system's CSPRNG."""

    def token_bytes(self, n: int) -> bytes:
        """Return ``n`` bytes from :func:`secrets.token_bytes`."""
        return secrets.token_bytes(n)


def new_account_id(rng: Rng) -> AccountId:
    """Make a random (version 4) account id from ``rng``."""
    raw = bytearray(rng.token_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return AccountId(UUID(bytes=bytes(raw)))
