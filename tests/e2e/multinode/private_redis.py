"""A Redis server of the test's own, to stop and start without disturbing anyone else.

The shared local Redis (``kurir.server.redis_testing``) serves every test running on the
machine; a test that needs Redis *down* for a while starts its own ``redis-server`` on a free
loopback port instead (no persistence: a restart comes back empty, like the real restart
test), and stops it for good at the end. Without ``redis-server`` the test skips, or fails
when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

GUARD_SECONDS: Final = 30.0
"""Only a guard against a server that never comes up; no assertion depends on time."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """One ``redis-server`` process on 127.0.0.1:``port``; :meth:`stop` and :meth:`start`."""

    def __init__(self, executable: str, port: int, log: Path) -> None:
        self._executable = executable
        self.port = port
        self._log = log
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start the server (empty) and wait until it answers PING."""
        with self._log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                self._executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                stdout=log,
                stderr=log,
            )
        client: Redis = Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            async with asyncio.timeout(GUARD_SECONDS):
                while True:
                    with contextlib.suppress(RedisError, OSError):
                        if await client.ping():
                            return
                    # an external process has no event to wait on: poll it
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM the server and wait for it (everything in it is lost)."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._process = None


@contextlib.asynccontextmanager
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A started private Redis, stopped at the end."""
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "redis-server is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: Redis tests must run)", pytrace=False)
        pytest.skip(reason)
    server = PrivateRedis(executable, _free_port(), tmp_path / "private-redis.log")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
