"""End-to-end fixtures: a server process per test and a factory of registered clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from e2e.harness import MakeClient, ServerProcess, app_key, run_server
from kurir.client.client import Client


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with run_server(tmp_path / "server-data", tmp_path / "server.log") as running:
        yield running


@pytest.fixture
async def make_client(tmp_path: Path, server: ServerProcess) -> AsyncIterator[MakeClient]:
    """Registers (once per profile) and opens clients; all are closed at the end."""
    opened: list[Client] = []

    async def make(address: str, *, connect: bool = True, profile: str | None = None) -> Client:
        path = tmp_path / "profiles" / (profile or address.replace(":", "_"))
        client = await Client.open(path, server.url, app_key=app_key(address))
        opened.append(client)
        if client.account is None:
            await client.register(address)  # the development code, 123456
        if connect:
            await client.connect()
            await client.wait_drained()
        return client

    yield make
    for client in opened:
        with contextlib.suppress(Exception):
            await client.close()
