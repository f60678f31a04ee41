"""Running a real kurir server inside tests (real sockets on 127.0.0.1, port 0).

This module owns test-only helpers shared by the server's and the client's tests:
:func:`start_server` (in-process uvicorn on the running event loop), :func:`spawn_server`
(a ``kurir serve`` subprocess that can be killed), :class:`FakeClock` and :class:`SeededRng`.
Nothing in production imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette

from kurir.server.app import create_app
from kurir.server.config import AppCatalogue, ServerConfig, load_apps
from kurir.server.run import bind_socket, make_server
from kurir.server.types import Clock, Rng, SystemClock, SystemRng
from kurir.server.verifier import DEV_CODE

__all__ = [
    "DEV_CODE",
    "FakeClock",
    "RunningServer",
    "SeededRng",
    "ServerProcess",
    "spawn_server",
    "start_server",
]

_LISTENING: Final = re.compile(rb"kurir listening on http://([0-9.]+):(\d+)")


class FakeClock:
    """A clock that moves only when told to.

    Args:
        start_ms: The initial time in milliseconds since the epoch.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        """The current fake time."""
        return self._now

    def advance(self, ms: int) -> None:
        """Move time forward by ``ms`` milliseconds."""
        if ms < 0:
            raise ValueError("time only moves forward")
        self._now += ms


class SeededRng:
    """Deterministic bytes (SHA-256 in counter mode) for reproducible tests. Not for production."""

    def __init__(self, seed: bytes | int = 0) -> None:
        self._seed = seed if isinstance(seed, bytes) else seed.to_bytes(16, "big")
        self._counter = 0

    def token_bytes(self, n: int) -> bytes:
        """The next ``n`` deterministic bytes."""
        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        return out[:n]


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A started server.

    Attributes:
        base_url: ``http://127.0.0.1:<port>``, for HTTP clients.
        ws_url: ``ws://127.0.0.1:<port>/v1/ws``, for the WebSocket.
        port: The bound port.
        config: The configuration it runs with.
        app: The ASGI application (``app.state.services`` once started).
    """

    base_url: str
    ws_url: str
    port: int
    config: ServerConfig
    app: Starlette = field(repr=False)

    @property
    def apps(self) -> AppCatalogue:
        """The app catalogue."""
        return self.config.apps

    def client_key(self, app_id: str) -> str:
        """The client key of an app (for ``X-Kurir-App-Key``)."""
        app = self.config.apps.get(app_id)
        if app is None:
            raise KeyError(app_id)
        return app.client_key


class _StartupWatch:
    """ASGI wrapper that sets an event when the lifespan startup completed."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.started = asyncio.Event()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched_send(message: MutableMapping[str, Any]) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                self.started.set()

        await self.app(scope, receive, watched_send)


@contextlib.asynccontextmanager
async def start_server(
    data_dir: Path | None,
    *,
    config: ServerConfig | None = None,
    clock: Clock | None = None,
    rng: Rng | None = None,
    default_reachability: str = "everyone",
) -> AsyncIterator[RunningServer]:
    """Run a real kurir server on ``127.0.0.1`` (free port) in this event loop.

    Args:
        data_dir: Directory of the SQLite database; ``None`` keeps state in memory.
            Reusing a directory across two ``start_server`` blocks restarts the server.
        config: Overrides (``data_dir``, ``host`` and ``port`` are replaced); default: the
            built-in catalogue and default limits.
        clock: Defaults to the system clock (pass a :class:`FakeClock` to drive expiry).
        rng: Defaults to the system CSPRNG.
        default_reachability: Replaces the config's (tests message strangers of other apps;
            production's default is ``contacts``).

    Yields:
        The running server; it stops (closing sockets and storage) when the block exits.

    Raises:
        RuntimeError: The server failed to start (e.g. a newer database schema).
    """
    base = config if config is not None else ServerConfig(apps=load_apps())
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    cfg = replace(
        base,
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        default_reachability=default_reachability,
    )
    app = create_app(cfg, clock=clock or SystemClock(), rng=rng or SystemRng())
    watch = _StartupWatch(app)
    server = make_server(app, host="127.0.0.1", port=port)
    server.config.app = watch
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    started = asyncio.create_task(watch.started.wait())
    try:
        await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
        if not watch.started.is_set():
            raise RuntimeError("kurir server failed to start")
        yield RunningServer(
            f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/ws", port, cfg, app
        )
    finally:
        started.cancel()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close()


@dataclass(slots=True)
class ServerProcess:
    """A ``kurir serve`` subprocess.

    Attributes:
        base_url: ``http://127.0.0.1:<port>``.
        ws_url: ``ws://127.0.0.1:<port>/v1/ws``.
        process: The child process.
    """

    base_url: str
    ws_url: str
    process: asyncio.subprocess.Process

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL): no graceful shutdown, no flush."""
        if self.process.returncode is None:
            self.process.kill()


@contextlib.asynccontextmanager
async def spawn_server(
    data_dir: Path, *, port: int = 0, extra_args: Sequence[str] = ()
) -> AsyncIterator[ServerProcess]:
    """Run ``python -m kurir.cli.main serve --data-dir DATA_DIR --port PORT`` as a child
    (``extra_args`` appended).

    Waits for its "kurir listening on" line; on exit, terminates it (if still running).

    Raises:
        RuntimeError: The process exited before listening.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
        "--default-reachability",
        "everyone",
        *extra_args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    if process.stdout is None:
        raise RuntimeError("no stdout pipe")
    try:
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError("kurir serve exited before listening")
            match = _LISTENING.search(line)
            if match is not None:
                break
        found_port = int(match.group(2))
        drain = asyncio.create_task(_drain(process.stdout))
        try:
            yield ServerProcess(
                f"http://127.0.0.1:{found_port}", f"ws://127.0.0.1:{found_port}/v1/ws", process
            )
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
