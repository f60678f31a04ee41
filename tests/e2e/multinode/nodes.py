"""Several `kurir serve` nodes sharing one database and one Redis, and a failover proxy.

A node is a real child process (``--database``, ``--redis``), its output teed into a log file.
:class:`FailoverProxy` stands in for a load balancer in front of the nodes: every TCP
connection goes to the first node in its preference order that accepts it, so a client whose
node died reconnects to another one, and a test can move a client between nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

_LISTENING: Final = re.compile(rb"kurir listening on http://127\.0\.0\.1:(\d+)")
GUARD_SECONDS: Final = 60.0
"""Only a guard against a hung test; no assertion depends on time."""


@dataclass
class Node:
    """One running (or killed) node."""

    port: int
    log_path: Path
    process: asyncio.subprocess.Process
    copier: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        if self.copier is not None:
            await self.copier

    async def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await self.process.wait()
        if self.copier is not None:
            await self.copier


async def start_node(
    log_path: Path,
    *,
    data_dir: Path,
    database: str | None,
    redis: str | None,
    port: int = 0,
    node_id: str | None = None,
) -> Node:
    """Start ``kurir serve`` and wait for its "listening" line. Stop it with `Node.stop`."""
    args = ["--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    # these tests are about routing, not about who may reach whom across apps (issue 5)
    args += ["--default-reachability", "everyone"]
    if database is not None:
        args += ["--database", database]
    if redis is not None:
        args += ["--redis", redis]
    if node_id is not None:
        args += ["--node-id", node_id]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kurir.cli.main",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    stdout = process.stdout
    if stdout is None:
        raise RuntimeError("no stdout pipe")
    log = log_path.open("ab")
    found: int | None = None
    try:
        async with asyncio.timeout(GUARD_SECONDS):
            while found is None:
                line = await stdout.readline()
                if not line:
                    raise RuntimeError(f"kurir serve exited before listening (see {log_path})")
                log.write(line)
                match = _LISTENING.search(line)
                if match is not None:
                    found = int(match.group(1))
    except BaseException:
        log.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise

    async def tee() -> None:
        try:
            while chunk := await stdout.read(65536):
                log.write(chunk)
                log.flush()
        finally:
            log.close()

    return Node(found, log_path, process, asyncio.create_task(tee()))


@contextlib.asynccontextmanager
async def running_nodes(
    tmp_path: Path, count: int, *, database: str | None, redis: str | None
) -> AsyncIterator[list[Node]]:
    """``count`` nodes sharing ``database`` and ``redis``; all stopped at the end."""
    nodes: list[Node] = []
    try:
        for i in range(count):
            nodes.append(
                await start_node(
                    tmp_path / f"node-{i + 1}.log",
                    data_dir=tmp_path / f"node-{i + 1}-data",
                    database=database,
                    redis=redis,
                )
            )
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


async def restart(node: Node, *, database: str | None, redis: str | None) -> Node:
    """Start a node again on the same port and data directory (after `Node.kill`)."""
    return await start_node(
        node.log_path,
        data_dir=node.log_path.with_name(node.log_path.stem + "-data"),
        database=database,
        redis=redis,
        port=node.port,
    )


class FailoverProxy:
    """A TCP proxy on 127.0.0.1 that connects each client to the first live backend port.

    Args:
        ports: Backend ports, most preferred first (`prefer` changes the order).
    """

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def prefer(self, port: int) -> None:
        """New connections go to ``port`` first."""
        self.ports = [port, *(p for p in self.ports if p != port)]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def sever(self) -> None:
        """Cut every open proxied connection (as a load balancer draining a node would)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.sever()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for port in list(self.ports):
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        if upstream is None:
            writer.transport.abort()
            return
        up_reader, up_writer = upstream
        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        if task is not None:
            self._pipes.add(task)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            if task is not None:
                self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` holds, asking again every 50 ms: a node's log file or a key that
    Redis deletes has no event to wait on. Only a guard limits it; no assertion depends on time."""
    for _ in range(1200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition never held")


def logged(path: Path, text: bytes) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`until`: ``text`` appears in the file at ``path`` (a node's log)."""

    async def check() -> bool:
        return text in await asyncio.to_thread(path.read_bytes)

    return check
