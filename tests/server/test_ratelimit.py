"""Token buckets driven by a fake clock (no sockets)."""

from __future__ import annotations

from kurir.server.config import RateLimit
from kurir.server.ratelimit import RateLimiter
from kurir.server.testing import FakeClock


def test_burst_then_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(burst=3, refill_ms=1000), clock)
    assert [limiter.try_acquire("k") for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after_s("k") == 1
    clock.advance(999)
    assert not limiter.try_acquire("k")
    clock.advance(1)
    assert limiter.try_acquire("k")
    assert not limiter.allowed("k")
    assert limiter.try_acquire("other")


def test_refill_never_exceeds_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(burst=2, refill_ms=10), clock)
    clock.advance(10_000)
    assert [limiter.try_acquire("k") for _ in range(3)] == [True, True, False]


def test_consume_counts_failures_without_refusing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(burst=2, refill_ms=60_000), clock)
    limiter.consume("h")
    assert limiter.allowed("h")
    limiter.consume("h")
    assert not limiter.allowed("h")
    limiter.consume("h")  # nothing left to take: still fine
    assert limiter.retry_after_s("h") == 60


def test_table_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(burst=1, refill_ms=1000), clock, max_keys=10)
    for i in range(100):
        assert limiter.try_acquire(f"k{i}")
    assert len(limiter._buckets) <= 10
