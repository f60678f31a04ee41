"""Token-bucket rate limiting with an injected clock.

This module owns the bucket arithmetic. Keys are opaque strings chosen by the caller (never
logged); the table is bounded: buckets that are full again are forgotten first.
"""

from __future__ import annotations

import math
from typing import Final

from kurir.server.config import RateLimit
from kurir.server.types import Clock

__all__ = ["RateLimiter"]

_MAX_KEYS: Final = 100_000


class RateLimiter:
    """Per-key token buckets of one :class:`RateLimit`.

    Args:
        limit: Burst size and refill period.
        clock: The time source.
        max_keys: Most keys remembered at once.
    """

    def __init__(self, limit: RateLimit, clock: Clock, *, max_keys: int = _MAX_KEYS) -> None:
        self._limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (tokens, at_ms)

    def _tokens(self, key: str, now: int) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return float(self._limit.burst)
        tokens, at = entry
        refilled = tokens + max(0, now - at) / self._limit.refill_ms
        return min(float(self._limit.burst), refilled)

    def allowed(self, key: str) -> bool:
        """Tell whether one token is available for ``key`` without taking it."""
        return self._tokens(key, self._clock.now_ms()) >= 1.0

    def try_acquire(self, key: str) -> bool:
        """Take one token for ``key``; return ``False`` (and take nothing) if none is left."""
        now = self._clock.now_ms()
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            return False
        self._store(key, tokens - 1.0, now)
        return True

    def consume(self, key: str) -> None:
        """Take one token for ``key`` if there is one (used to count failures)."""
        self.try_acquire(key)

    def retry_after_s(self, key: str) -> int:
        """Whole seconds until ``key`` has a token again (at least 1)."""
        missing = 1.0 - self._tokens(key, self._clock.now_ms())
        return max(1, math.ceil(missing * self._limit.refill_ms / 1000))

    def _store(self, key: str, tokens: float, now: int) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._forget_full(now)
        self._buckets[key] = (tokens, now)

    def _forget_full(self, now: int) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self._limit.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:  # still full: drop the oldest half
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]
