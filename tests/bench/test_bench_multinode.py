"""The load generator against two `kurir serve` nodes sharing PostgreSQL and Redis.

Checks the tool, not speed: a short run over two nodes (devices connected round-robin, so
messages cross nodes) delivers everything without errors, and afterwards the run's database is
dropped and its nodes' Redis keys are gone. Skips without PostgreSQL or Redis (fails under CI).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from kurir.bench.load import LoadOptions, run_load
from kurir.server.redis_testing import require_redis
from kurir.server.storage.pg_testing import require_postgres


async def _bench_databases(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'kurir\\_bench\\_%'"
        )
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


async def _bench_node_keys(url: str) -> list[bytes]:
    redis: Redis = Redis.from_url(url)
    try:
        return [k async for k in redis.scan_iter(match="kurir:node:{bench-*")]
    finally:
        await redis.aclose()


def test_two_nodes_deliver_and_clean_up(tmp_path: Path) -> None:
    database = require_postgres()
    redis = asyncio.run(require_redis())
    databases_before = asyncio.run(_bench_databases(database))
    options = LoadOptions(
        devices=6,
        workers=1,
        rates=(None,),
        duration_s=1.0,
        warmup_s=0.5,
        data_dir=tmp_path,
        database=database,
        redis=redis,
        nodes=2,
    )

    [result] = run_load(options)

    assert result.devices == 6
    assert result.errors == {}
    assert result.delivered > 0
    assert result.undelivered == 0
    assert asyncio.run(_bench_databases(database)) == databases_before
    assert asyncio.run(_bench_node_keys(redis)) == []


def test_several_nodes_need_database_and_redis() -> None:
    with pytest.raises(ValueError, match="database and redis"):
        LoadOptions(nodes=2, database="postgresql://127.0.0.1/x")
