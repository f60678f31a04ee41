"""Rate limits shared through Redis: two nodes grant one budget, not two.

Against the real local Redis (skipped with the reason without one, failed under CI), with a
fake clock driving refills. Each test uses its own limit name, so buckets never collide.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from kurir.server.config import RateLimit, RateLimits
from kurir.server.redis_testing import require_redis
from kurir.server.shared_limits import (
    LocalLimiter,
    RedisLimiter,
    close_limiters,
    open_limiters,
)
from kurir.server.testing import FakeClock


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(await require_redis())
    yield client
    await client.aclose()


def limit_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


async def test_two_nodes_share_one_bucket(redis: Redis) -> None:
    clock = FakeClock()
    name, limit = limit_name(), RateLimit(burst=3, refill_ms=1_000)
    node_one = RedisLimiter(redis, name, limit, clock)
    node_two = RedisLimiter(redis, name, limit, clock)
    assert await node_one.try_acquire("203.0.113.7")
    assert await node_two.try_acquire("203.0.113.7")
    assert await node_one.try_acquire("203.0.113.7")
    assert not await node_two.try_acquire("203.0.113.7")  # the third token went on node one
    assert not await node_one.allowed("203.0.113.7")
    assert await node_two.retry_after_s("203.0.113.7") == 1
    assert await node_two.try_acquire("198.51.100.1")  # another key, another bucket
    clock.advance(1_000)
    assert await node_two.allowed("203.0.113.7")
    assert await node_one.try_acquire("203.0.113.7")
    assert not await node_two.try_acquire("203.0.113.7")


async def test_counting_failures_then_refusing_across_nodes(redis: Redis) -> None:
    clock = FakeClock()
    name, limit = limit_name(), RateLimit(burst=2, refill_ms=60_000)
    node_one = RedisLimiter(redis, name, limit, clock)
    node_two = RedisLimiter(redis, name, limit, clock)
    await node_one.consume("host")
    assert await node_two.allowed("host")
    await node_two.consume("host")
    assert not await node_one.allowed("host")
    await node_one.consume("host")  # nothing left to take: still fine
    assert await node_one.retry_after_s("host") == 60


async def test_redis_never_sees_the_identifier(redis: Redis) -> None:
    name = limit_name()
    limiter = RedisLimiter(redis, name, RateLimit(burst=1, refill_ms=1_000), FakeClock())
    assert await limiter.try_acquire("whatsapp:+6281234567890")
    keys = [k.decode() async for k in redis.scan_iter(match=f"kurir:rl:{name}:*")]
    assert len(keys) == 1
    assert "6281234567890" not in keys[0]
    assert await redis.pttl(keys[0]) > 0  # buckets expire once full again


async def test_without_redis_each_node_limits_locally() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    limiters = open_limiters(f"redis://127.0.0.1:{port}", RateLimits(), FakeClock())
    try:
        verify = limiters.verification_per_address  # burst 3
        assert isinstance(verify, RedisLimiter)
        assert [await verify.try_acquire("a") for _ in range(4)] == [True, True, True, False]
        assert not await verify.allowed("a")
        assert await verify.retry_after_s("a") == 60
    finally:
        await close_limiters(limiters)


async def test_no_redis_configured_means_local_limiters() -> None:
    limiters = open_limiters(None, RateLimits(), FakeClock())
    assert isinstance(limiters.failed_auth_per_host, LocalLimiter)
    assert [await limiters.directory_per_account.try_acquire("x") for _ in range(61)][-2:] == [
        True,
        False,
    ]
    await close_limiters(limiters)
