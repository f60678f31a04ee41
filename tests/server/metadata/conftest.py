"""Fixtures of the metadata tests: a real server (SQLite) whose default reachability is the
production default, ``contacts``, and helpers to send and read over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kurir.server.testing import FakeClock, RunningServer, start_server


@pytest.fixture
def clock() -> FakeClock:
    """The server's clock."""
    return FakeClock()


@pytest.fixture
async def mserver(tmp_path: Path, clock: FakeClock) -> AsyncIterator[RunningServer]:
    """A running server with SQLite and the production default reachability."""
    async with start_server(
        tmp_path / "data", clock=clock, default_reachability="contacts"
    ) as running:
        yield running


@pytest.fixture
async def mhttp(mserver: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client bound to ``mserver``."""
    async with httpx.AsyncClient(base_url=mserver.base_url) as client:
        yield client
