"""The e2e ``server`` fixture, on PostgreSQL: every test here runs the real ``kurir serve``
process with ``--database`` pointing at a fresh schema of this session's scratch database.

Without a reachable PostgreSQL these tests skip with the reason, or fail when ``CI`` is set
(kurir.server.storage.pg_testing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from e2e.harness import ServerProcess, run_server
from kurir.server.storage.pg_testing import fresh_schema, require_postgres, scratch_database


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """DSN of a scratch database for this session, dropped at the end."""
    with scratch_database(require_postgres()) as dsn:
        yield dsn


@pytest.fixture
async def database_url(postgres_database: str) -> str:
    """A ``postgresql://`` URL whose connections use a fresh, empty schema."""
    return await fresh_schema(postgres_database)


@pytest.fixture
async def server(tmp_path: Path, database_url: str) -> AsyncIterator[ServerProcess]:
    """A ``kurir serve`` process storing in PostgreSQL (its data dir stays empty)."""
    async with run_server(
        tmp_path / "server-data", tmp_path / "server.log", database=database_url
    ) as running:
        yield running
