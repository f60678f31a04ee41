"""Shared fixtures of the server tests: a real server on 127.0.0.1 and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kurir.server.testing import RunningServer, start_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running server with a SQLite database in ``tmp_path``."""
    async with start_server(tmp_path / "data") as running:
        yield running


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client bound to ``server``."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client
