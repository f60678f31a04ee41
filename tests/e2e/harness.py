"""End-to-end harness: a real `kurir serve` process (SQLite in tmp_path) and real clients.

The server runs as a child process on 127.0.0.1 (a free port), with everything it prints
(its log) copied into a file next to its data directory, so tests can search every byte the
server wrote. Clients are the SDK's `Client` with profiles in tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kurir.client.client import Client
from kurir.client.events import DeliveryEvent, Event, MessageEvent
from kurir.server.config import load_apps

_LISTENING: Final = re.compile(rb"kurir listening on (http://127\.0\.0\.1:\d+)")
GUARD_SECONDS: Final = 60.0
"""Only a guard against a hung test; no assertion depends on time."""

RINA: Final = "instagram:@rina"
BUDI: Final = "whatsapp:+6281234567890"
MEGA: Final = "messenger:1000423"


@dataclass
class ServerProcess:
    """A running `kurir serve` child process."""

    url: str
    data_dir: Path
    log_path: Path
    process: asyncio.subprocess.Process

    async def kill(self) -> None:
        """Kills the server abruptly (SIGKILL: no shutdown, no flush) and waits for it."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        """Stops the server gracefully and waits for it (its log is complete afterwards)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await self.process.wait()


@contextlib.asynccontextmanager
async def run_server(
    data_dir: Path, log_path: Path, *, port: int = 0, database: str | None = None
) -> AsyncIterator[ServerProcess]:
    """Runs ``python -m kurir.cli.main serve`` with its output teed into ``log_path``.

    ``port`` 0 picks a free port; pass the port of an earlier run to restart "the same" server.
    ``database`` (a ``postgresql://`` URL) stores in PostgreSQL instead of ``data_dir``.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kurir.cli.main",
        "serve",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(() if database is None else ("--database", database)),
        "--default-reachability",  # the e2e tests message strangers of other apps
        "everyone",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None
    log = log_path.open("ab")
    url = None
    try:
        async with asyncio.timeout(GUARD_SECONDS):
            while url is None:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError("kurir serve exited before listening")
                log.write(line)
                match = _LISTENING.search(line)
                if match is not None:
                    url = match.group(1).decode()

        async def tee(stream: asyncio.StreamReader) -> None:
            while chunk := await stream.read(65536):
                log.write(chunk)
                log.flush()

        copier = asyncio.create_task(tee(process.stdout))
        server = ServerProcess(url, data_dir, log_path, process)
        try:
            yield server
        finally:
            await server.stop()
            await copier
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


def app_key(address: str) -> str:
    app = load_apps().get(address.partition(":")[0])
    assert app is not None
    return app.client_key


MakeClient = Callable[..., Awaitable[Client]]
"""``await make_client(address, connect=True, profile=None)`` (the e2e fixture)."""


async def next_event(client: Client) -> Event:
    """The client's next event, marked handled."""
    async with asyncio.timeout(GUARD_SECONDS):
        event = await client.next_event()
    client.handled(event)
    return event


async def collect(
    client: Client, *, messages: int = 0, receipts: int = 0
) -> tuple[list[MessageEvent], list[DeliveryEvent]]:
    """Takes events until ``messages`` messages and ``receipts`` delivery receipts arrived.

    Fails on any other event, and on more events of a kind than asked for.
    """
    got_messages: list[MessageEvent] = []
    got_receipts: list[DeliveryEvent] = []
    while len(got_messages) < messages or len(got_receipts) < receipts:
        event = await next_event(client)
        match event:
            case MessageEvent():
                got_messages.append(event)
            case DeliveryEvent():
                got_receipts.append(event)
            case _:
                raise AssertionError(f"unexpected event {event}")
    assert len(got_messages) == messages
    assert len(got_receipts) == receipts
    return got_messages, got_receipts


async def messages(client: Client, count: int) -> list[MessageEvent]:
    """The next ``count`` events, which must all be messages."""
    return (await collect(client, messages=count))[0]


async def receipts(client: Client, count: int) -> list[DeliveryEvent]:
    """The next ``count`` events, which must all be delivery receipts."""
    return (await collect(client, receipts=count))[1]
