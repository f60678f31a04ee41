"""Processes of a benchmark run: the server under test, and CPU/memory sampling from ``/proc``.

This module owns starting ``kurir serve`` as a separate process (its own data directory, a
free port, the file-descriptor limit raised for the idle run), stopping it, and reading a
process's CPU time (``/proc/<pid>/stat`` utime + stime, proc(5)) and resident memory
(``/proc/<pid>/status`` VmRSS, VmHWM). It knows nothing of the workload. Linux only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "CpuSample",
    "ServerProcess",
    "cpu_percent",
    "cpu_seconds",
    "cpu_total",
    "family",
    "raise_fd_limit",
    "read_commands",
    "rss_bytes",
    "start_kurir_server",
]

_TICKS: Final = os.sysconf("SC_CLK_TCK")
_LISTENING: Final = re.compile(rb"kurir listening on http://([0-9.]+):(\d+)")


def read_commands(conn: Connection) -> asyncio.Queue[Any]:
    """The commands the coordinator sends over ``conn``, as a queue fed by the running loop
    (undo with ``loop.remove_reader(conn.fileno())``).

    The descriptor stays blocking: the loop only watches it, and a worker's reply (its
    statistics, megabytes at high rates) must wait for room in the pipe, not fail with EAGAIN.
    """
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        while conn.poll():
            commands.put_nowait(conn.recv())

    loop.add_reader(conn.fileno(), readable)
    os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking
    return commands


def raise_fd_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to the hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by every thread of ``pid``.

    Raises:
        OSError: No such process.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def family(pids: list[int]) -> list[int]:
    """``pids`` and their child processes (a kurir server's SQLite writer runs as its child),
    from ``/proc/<pid>/task/<tid>/children``; a process already gone is left out."""
    found: list[int] = []
    for pid in pids:
        found.append(pid)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                    found.extend(int(child) for child in f.read().split())
    return found


def rss_bytes(pid: int, *, peak: bool = False) -> int:
    """Resident memory of ``pid`` (``VmRSS``), or its peak (``VmHWM``) when ``peak``.

    Raises:
        OSError: No such process.
    """
    key = b"VmHWM:" if peak else b"VmRSS:"
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds of a set of processes at one monotonic instant."""

    at: float
    seconds: float


def cpu_total(pids: list[int]) -> CpuSample:
    """CPU seconds of ``pids`` together, now (processes already gone count as 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone: counts as 0
            total += cpu_seconds(pid)
    return CpuSample(time.monotonic(), total)


def cpu_percent(before: CpuSample, after: CpuSample) -> float:
    """CPU between two samples, in percent of one core (200 = two cores busy)."""
    elapsed = after.at - before.at
    return 0.0 if elapsed <= 0 else 100.0 * (after.seconds - before.seconds) / elapsed


def _raise_child_fd_limit() -> None:
    raise_fd_limit()


class ServerProcess:
    """A running ``kurir serve`` child; use :func:`start_kurir_server`, always :meth:`stop`.

    Attributes:
        pid: Its process id.
        host: The address it listens on.
        port: Its TCP port.
    """

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int) -> None:
        self._process = process
        self.pid = process.pid
        self.host = host
        self.port = port
        self._drain = threading.Thread(target=self._drain_output, daemon=True)
        self._drain.start()

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def _drain_output(self) -> None:
        out: IO[bytes] | None = self._process.stdout
        if out is not None:
            while out.read(65536):
                pass

    def alive(self) -> bool:
        """Whether it is still running."""
        return self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; wait for it."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._drain.join(10)
        if self._process.stdout is not None:
            self._process.stdout.close()


def start_kurir_server(
    data_dir: Path,
    *,
    port: int = 0,
    timeout_s: float = 60.0,
    variants: tuple[str, ...] = (),
    extra_args: tuple[str, ...] = (),
    wrapper: tuple[str, ...] = (),
) -> ServerProcess:
    """Start ``python -m kurir.cli.main serve --data-dir DATA_DIR --port PORT`` on 127.0.0.1.

    This is exactly ``kurir serve`` (same interpreter, same code); its soft file-descriptor
    limit is raised to the hard limit so it can hold the idle run's sockets. With
    ``variants``, :mod:`kurir.bench.variant_server` runs instead: the same server with the
    named experimental changes, to measure a recommended change before it is made.
    ``extra_args`` are appended to its command line (e.g. ``--database``, ``--redis``,
    ``--node-id`` for one of several nodes). ``wrapper`` is put before the interpreter (a
    valgrind command line: :mod:`kurir.bench.instructions`).

    Raises:
        RuntimeError: It exited or did not announce its port within ``timeout_s``.
    """
    if variants:
        program = ["kurir.bench.variant_server", *(f"--variant={v}" for v in variants)]
    else:
        program = ["kurir.cli.main", "serve"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            *wrapper,
            sys.executable,
            "-m",
            *program,
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=_raise_child_fd_limit,
    )
    deadline = time.monotonic() + timeout_s
    out = process.stdout
    if out is None:
        raise RuntimeError("no stdout pipe")
    seen = b""
    while time.monotonic() < deadline:
        line = out.readline()
        if not line:
            break
        seen += line
        match = _LISTENING.search(line)
        if match is not None:
            return ServerProcess(process, match.group(1).decode(), int(match.group(2)))
    process.kill()
    process.wait()
    raise RuntimeError(f"kurir serve did not start: {seen.decode(errors='replace')[-2000:]}")
