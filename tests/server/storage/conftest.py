"""The engine fixture: every conformance test runs against every storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kurir.server.storage.memory import MemoryEngine
from kurir.server.storage.protocols import Storage, StorageEngine
from kurir.server.storage.sqlite import SqliteEngine


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """The stores of a fresh engine of each kind."""
    engine: StorageEngine
    if request.param == "memory":
        engine = MemoryEngine()
    else:
        engine = SqliteEngine.open(tmp_path / "kurir.db")
    try:
        yield engine.storage
    finally:
        await engine.close()
