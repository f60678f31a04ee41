"""The GroupStore contract tests of tests/server/test_groups_store.py, unchanged, on PostgreSQL.

Every ``test_*`` function of that module is collected here again with a ``storage`` fixture
that opens the PostgreSQL engine on a fresh schema and registers the same accounts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kurir.server.storage.pg_testing import fresh_schema
from kurir.server.storage.postgres import PostgresEngine
from kurir.server.storage.protocols import Storage
from kurir.wire.address import Address
from server import test_groups_store as _contract


@pytest.fixture
async def storage(postgres_database: str) -> AsyncIterator[Storage]:
    """The PostgreSQL engine's stores with the contract's accounts registered."""
    engine = await PostgresEngine.open(await fresh_schema(postgres_database))
    for i, account_id in enumerate(_contract.IDS):
        await engine.storage.accounts.register(
            Address("messenger", str(1000 + i)),
            new_account_id=account_id,
            device=_contract.DEVICE,
            now=1,
        )
    try:
        yield engine.storage
    finally:
        await engine.close()


globals().update({name: fn for name, fn in vars(_contract).items() if name.startswith("test_")})
