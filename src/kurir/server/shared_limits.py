"""Rate limits that hold across nodes: token buckets kept in Redis, or in this process.

This module owns the asynchronous :class:`Limiter` seam that the services take, its local
implementation (:class:`LocalLimiter`, over :class:`kurir.server.ratelimit.RateLimiter`) and
its shared one (:class:`RedisLimiter`: one bucket per key in Redis, updated atomically by a
Lua script, so N nodes behind a load balancer grant one budget, not N). It chooses which
limits are shared (:func:`open_limiters`): all of the protocol's limits guard against abuse
(code spraying, password guessing, directory enumeration, draining one-time prekeys), so with
Redis configured all are shared.

Bucket keys are SHA-256 digests of the limit's name and the caller's key (an address, a host
or an account id), so Redis never holds an identifier in the clear. When Redis cannot be
reached a :class:`RedisLimiter` answers from a node-local bucket instead: limits keep holding
per node, and the service keeps running.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kurir.server.config import RateLimit, RateLimits
from kurir.server.ratelimit import RateLimiter
from kurir.server.types import Clock

__all__ = [
    "CONTACT_UPLOAD_LIMIT",
    "Limiter",
    "Limiters",
    "LocalLimiter",
    "RedisLimiter",
    "close_limiters",
    "open_limiters",
]

_log = logging.getLogger("kurir.server.ratelimit")
_FAILURES = (RedisError, OSError, TimeoutError)
_RETRY_MS: Final = 5_000

CONTACT_UPLOAD_LIMIT: Final = RateLimit(5, 60_000)
"""Address-book uploads per account (issue 5): a burst of 5, then one per minute."""

# KEYS[1] = bucket; ARGV = burst, refill_ms, now_ms, take (1 take a token, 0 only look).
# Returns {1 if a token was (or is) available else 0, tokens left as text}.
_BUCKET: Final = """
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local burst = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) / refill)
local ok = 0
if tokens >= 1 then
  ok = 1
  if ARGV[4] == '1' then
    tokens = tokens - 1
    redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * refill) + 1000)
  end
end
return {ok, tostring(tokens)}
"""


class Limiter(Protocol):
    """Token buckets of one limit, keyed by caller (docs/protocol.md §Rate limits)."""

    async def try_acquire(self, key: str) -> bool:
        """Take one token for ``key``; ``False`` (and nothing taken) if none is left."""
        ...

    async def allowed(self, key: str) -> bool:
        """Whether ``key`` has a token, without taking it."""
        ...

    async def consume(self, key: str) -> None:
        """Take a token for ``key`` if there is one (counts failures)."""
        ...

    async def retry_after_s(self, key: str) -> int:
        """Whole seconds until ``key`` has a token again (at least 1)."""
        ...


class LocalLimiter:
    """:class:`Limiter` over a node-local :class:`RateLimiter`."""

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        self._local = RateLimiter(limit, clock)

    async def try_acquire(self, key: str) -> bool:
        """See :meth:`Limiter.try_acquire`."""
        return self._local.try_acquire(key)

    async def allowed(self, key: str) -> bool:
        """See :meth:`Limiter.allowed`."""
        return self._local.allowed(key)

    async def consume(self, key: str) -> None:
        """See :meth:`Limiter.consume`."""
        self._local.consume(key)

    async def retry_after_s(self, key: str) -> int:
        """See :meth:`Limiter.retry_after_s`."""
        return self._local.retry_after_s(key)


class RedisLimiter:
    """:class:`Limiter` whose buckets live in Redis and are shared by every node.

    Args:
        redis: The client (shared by the node's limiters).
        name: The limit's name (part of every bucket key).
        limit: Burst and refill.
        clock: Time source; nodes' clocks should agree to within a refill period.
    """

    def __init__(self, redis: Redis, name: str, limit: RateLimit, clock: Clock) -> None:
        self._redis = redis
        self._name = name
        self._limit = limit
        self._clock = clock
        self._fallback = RateLimiter(limit, clock)
        self._failing = False
        self._retry_at_ms = 0  # after a failure, skip Redis until then (no timeout per request)

    def _key(self, key: str) -> str:
        digest = hashlib.sha256(f"{self._name}\0{key}".encode()).hexdigest()[:32]
        return f"kurir:rl:{self._name}:{{{digest}}}"

    async def _bucket(self, key: str, *, take: bool) -> tuple[bool, float] | None:
        if self._failing and self._clock.now_ms() < self._retry_at_ms:
            return None
        try:
            ok, tokens = await self._redis.eval(
                _BUCKET,
                1,
                self._key(key),
                self._limit.burst,
                self._limit.refill_ms,
                self._clock.now_ms(),
                "1" if take else "0",
            )
        except _FAILURES as exc:
            if not self._failing:
                _log.warning("rate limits: redis unreachable (%s); node-local", type(exc).__name__)
                self._failing = True
            self._retry_at_ms = self._clock.now_ms() + _RETRY_MS
            return None
        self._failing = False
        return int(ok) == 1, float(tokens)

    async def close_client(self) -> None:
        """Close the Redis client (shared by the node's limiters: close it once)."""
        await self._redis.aclose()

    async def try_acquire(self, key: str) -> bool:
        """See :meth:`Limiter.try_acquire`."""
        answer = await self._bucket(key, take=True)
        if answer is None:
            return self._fallback.try_acquire(key)
        return answer[0]

    async def allowed(self, key: str) -> bool:
        """See :meth:`Limiter.allowed`."""
        answer = await self._bucket(key, take=False)
        if answer is None:
            return self._fallback.allowed(key)
        return answer[0]

    async def consume(self, key: str) -> None:
        """See :meth:`Limiter.consume`."""
        if await self._bucket(key, take=True) is None:
            self._fallback.consume(key)

    async def retry_after_s(self, key: str) -> int:
        """See :meth:`Limiter.retry_after_s`."""
        answer = await self._bucket(key, take=False)
        if answer is None:
            return self._fallback.retry_after_s(key)
        missing = 1.0 - answer[1]
        return max(1, math.ceil(missing * self._limit.refill_ms / 1000))


@dataclass(frozen=True, slots=True)
class Limiters:
    """One :class:`Limiter` per limit of :class:`~kurir.server.config.RateLimits`."""

    verification_per_address: Limiter
    verification_per_host: Limiter
    registration_per_address: Limiter
    bundle_fetch_per_account: Limiter
    failed_auth_per_host: Limiter
    directory_per_account: Limiter
    contact_upload_per_account: Limiter
    """Address-book uploads (``services/contacts.py``), which also discover accounts."""


_NAMES: Final = (
    "verification_per_address",
    "verification_per_host",
    "registration_per_address",
    "bundle_fetch_per_account",
    "failed_auth_per_host",
    "directory_per_account",
)


def open_limiters(
    redis_url: str | None,
    limits: RateLimits,
    clock: Clock,
    *,
    contact_upload: RateLimit = CONTACT_UPLOAD_LIMIT,
) -> Limiters:
    """Shared limiters over Redis when ``redis_url`` is set, node-local ones otherwise.

    The Redis client connects lazily; close it with :func:`close_limiters`.

    Args:
        redis_url: Where the shared buckets live; ``None`` for node-local ones.
        limits: The protocol's limits (docs/protocol.md §Rate limits).
        clock: Time source.
        contact_upload: Address-book uploads per account.
    """
    chosen = {n: getattr(limits, n) for n in _NAMES}
    chosen["contact_upload_per_account"] = contact_upload
    if redis_url is None:
        return Limiters(**{n: LocalLimiter(limit, clock) for n, limit in chosen.items()})
    redis: Redis = Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return Limiters(**{n: RedisLimiter(redis, n, limit, clock) for n, limit in chosen.items()})


async def close_limiters(limiters: Limiters) -> None:
    """Close the Redis client of shared limiters (nothing to do for local ones)."""
    first = limiters.verification_per_address
    if isinstance(first, RedisLimiter):
        await first.close_client()
