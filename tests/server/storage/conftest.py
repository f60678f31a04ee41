"""The engine fixture: every conformance test runs against every storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kurir.server.storage.memory import MemoryEngine
from kurir.server.storage.pg_testing import fresh_schema, require_postgres, scratch_database
from kurir.server.storage.postgres import PostgresEngine
from kurir.server.storage.protocols import Storage, StorageEngine
from kurir.server.storage.sqlite import SqliteEngine


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """DSN of a scratch PostgreSQL database for this session (skip, or fail under CI, if the
    server is unreachable; see kurir.server.storage.pg_testing)."""
    with scratch_database(require_postgres()) as dsn:
        yield dsn


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """The stores of a fresh engine of each kind (PostgreSQL: a fresh schema per test)."""
    engine: StorageEngine
    if request.param == "memory":
        engine = MemoryEngine()
    elif request.param == "postgres":
        dsn = await fresh_schema(request.getfixturevalue("postgres_database"))
        engine = await PostgresEngine.open(dsn)
    else:
        engine = SqliteEngine.open(tmp_path / "kurir.db")
    try:
        yield engine.storage
    finally:
        await engine.close()
