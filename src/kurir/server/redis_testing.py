"""Reaching, and restarting, the local Redis in tests. Nothing in production imports it.

This module owns how kurir's tests find Redis: the ``KURIR_TEST_REDIS`` environment variable
(default :data:`DEFAULT_TEST_REDIS`, the local server on its standard port). Without a
reachable Redis the tests skip with the reason, except under CI (``CI`` set), where they fail:
CI must never skip them. :func:`restart_local_redis` restarts the server the way
``.ci/services.sh`` starts it (no persistence), and always leaves one running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = [
    "DEFAULT_TEST_REDIS",
    "TEST_REDIS_ENV",
    "can_restart_local_redis",
    "redis_test_url",
    "redis_unavailable",
    "require_redis",
    "restart_local_redis",
    "start_local_redis",
    "stop_local_redis",
]

TEST_REDIS_ENV: Final = "KURIR_TEST_REDIS"
DEFAULT_TEST_REDIS: Final = "redis://127.0.0.1:6379/0"
_START: Final = (
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
)


def redis_test_url() -> str:
    """The Redis URL tests use (``$KURIR_TEST_REDIS`` or the default)."""
    return os.environ.get(TEST_REDIS_ENV) or DEFAULT_TEST_REDIS


async def redis_unavailable(url: str) -> str | None:
    """Why ``url`` cannot be used, or ``None`` when it answers PING."""
    client: Redis = Redis.from_url(url, socket_connect_timeout=3)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        return f"Redis not reachable via ${TEST_REDIS_ENV} or the default: {exc}"
    finally:
        await client.aclose()
    return None


async def require_redis() -> str:
    """Return the test Redis URL if it answers; otherwise skip the calling test, or fail it
    when ``CI`` is set."""
    import pytest  # test-only module: pytest is a dev dependency

    url = redis_test_url()
    reason = await redis_unavailable(url)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: Redis tests must run)", pytrace=False)
        pytest.skip(reason)
    return url


async def _run(*argv: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


async def _wait(url: str, *, up: bool) -> None:
    for _ in range(300):
        if (await redis_unavailable(url) is None) == up:
            return
        await asyncio.sleep(0.1)  # polling an external process: there is no event to wait on
    raise RuntimeError(f"Redis did not {'start' if up else 'stop'}")


def can_restart_local_redis() -> str | None:
    """Why :func:`restart_local_redis` cannot work here, or ``None`` when it can."""
    if redis_test_url() != DEFAULT_TEST_REDIS:
        return f"${TEST_REDIS_ENV} names another Redis; only the local one is restarted"
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return "redis-server / redis-cli not installed"
    return None


async def stop_local_redis() -> None:
    """Shut the local Redis down without saving (everything in it is lost)."""
    await _run("redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave")
    await _wait(DEFAULT_TEST_REDIS, up=False)


async def start_local_redis() -> None:
    """Start the local Redis as ``.ci/services.sh`` does, unless it already answers."""
    if await redis_unavailable(DEFAULT_TEST_REDIS) is None:
        return
    await _run(*_START)
    await _wait(DEFAULT_TEST_REDIS, up=True)


async def restart_local_redis() -> None:
    """Stop the local Redis (losing everything in it) and start it again."""
    try:
        await stop_local_redis()
    finally:
        await start_local_redis()
