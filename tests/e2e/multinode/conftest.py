"""Fixtures of the multi-node tests: one scratch PostgreSQL database and the local Redis.

Without a reachable PostgreSQL or Redis these tests skip with the reason, or fail when ``CI``
is set (kurir.server.storage.pg_testing, kurir.server.redis_testing).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from e2e.harness import app_key
from kurir.client.client import Client
from kurir.server.redis_testing import require_redis
from kurir.server.storage.pg_testing import fresh_schema, require_postgres, scratch_database


@pytest.fixture(scope="session")
def multinode_database() -> Iterator[str]:
    """DSN of a scratch database for this session, dropped at the end."""
    with scratch_database(require_postgres()) as dsn:
        yield dsn


@pytest.fixture
async def database_url(multinode_database: str) -> str:
    """A ``postgresql://`` URL whose connections use a fresh, empty schema."""
    return await fresh_schema(multinode_database)


@pytest.fixture
async def redis_url() -> str:
    """The local test Redis (``$KURIR_TEST_REDIS`` or redis://127.0.0.1:6379/0), with no
    rate-limit bucket left from earlier tests (they register the same addresses again)."""
    url = await require_redis()
    redis: Redis = Redis.from_url(url)
    try:
        async for key in redis.scan_iter(match="kurir:rl:*"):
            await redis.delete(key)
    finally:
        await redis.aclose()
    return url


OpenClient = Callable[[str, str], Awaitable[Client]]
"""``await open_client(address, url)``: a registered, connected, drained SDK client."""


@pytest.fixture
async def open_client(tmp_path: Path) -> AsyncIterator[OpenClient]:
    """Registers and connects SDK clients (profiles in tmp_path); all closed at the end."""
    opened: list[Client] = []

    async def make(address: str, url: str) -> Client:
        profile = tmp_path / "profiles" / address.replace(":", "_")
        client = await Client.open(profile, url, app_key=app_key(address))
        opened.append(client)
        await client.register(address)
        await client.connect()
        await client.wait_drained()
        return client

    yield make
    for client in opened:
        with contextlib.suppress(Exception):
            await client.close()
