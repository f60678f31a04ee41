"""The load run: a server process, registered devices, generator processes, measured phases.

This module owns the orchestration of ``kurir bench``: start ``kurir serve`` on a fresh data
directory, register the devices over HTTP, start the generator processes
(:mod:`kurir.bench.worker`) with their share of the devices, then run one measurement phase
per requested rate (``None``: as fast as the server accepts) and turn the workers' counts into
:class:`PhaseResult` rows: accepted and delivered messages per second inside the counted window,
send-to-receipt latency percentiles, errors, the server's CPU (percent of one core) and peak
RSS, and the generator processes' own CPU. With ``database`` (and ``redis``, ``nodes``) in
:class:`LoadOptions` it runs the server on PostgreSQL instead: a fresh database
``kurir_bench_<random>`` on that server, dropped afterwards, and ``nodes`` ``kurir serve``
processes sharing it and Redis, devices connected round-robin over them, CPU and RSS summed
over them; afterwards only the Redis keys of the run's devices and nodes are deleted. It also
owns the idle-connections run (:func:`run_idle`). It knows nothing of terminals: progress
goes to an optional callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import tracemalloc
import urllib.parse
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from kurir.bench.instructions import InstructionCounter, wrapper
from kurir.bench.procs import (
    ServerProcess,
    cpu_percent,
    cpu_total,
    family,
    raise_fd_limit,
    rss_bytes,
    start_kurir_server,
)
from kurir.bench.register import DeviceCredentials, register_devices
from kurir.bench.worker import (
    C_ACCEPTED,
    C_CONNECTED,
    C_DELIVERED,
    C_ERRORS,
    C_SENT,
    COUNTERS,
    PhaseSpec,
    PhaseStats,
    WorkerConfig,
    worker_main,
)

__all__ = [
    "IdleResult",
    "LatencySummary",
    "LoadOptions",
    "PhaseResult",
    "Progress",
    "WorkerPool",
    "allocation_growth",
    "machine_info",
    "percentiles",
    "run_idle",
    "run_load",
    "run_phase",
]

_MIB: Final = 1024 * 1024
_SAMPLE_S: Final = 0.25
_START_DELAY_NS: Final = 300_000_000

Progress = Callable[[str, float, float], None]
"""Progress callback: (what is happening, done, total)."""


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Send-to-receipt latency of the messages sent inside the counted window (ms)."""

    samples: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One measured phase of one server.

    Attributes:
        server: Which server (``kurir``, ``synapse``, ...).
        target_rate: Offered messages per second, or ``None`` (as fast as accepted).
        accepted_per_s: Sends acknowledged by the server per second of the window.
        delivered_per_s: Messages received by recipients per second of the window.
        undelivered: Messages of the phase accepted but not received when collection ended.
        server_cpu_pct: Server CPU over the window (its processes and their children, the
            SQLite writer), percent of one core.
        server_rss_mib: Peak server RSS sampled during the window.
        generator_cpu_pct: All generator processes together, percent of one core.
        generator_max_lag_ms: How late the generator sent against its schedule (fixed rate).
        load_avg_1m: The machine's 1-minute load average at the end of the window: above
            about 2 on this 2-core machine, something else competed for the CPUs.
        instructions_per_message: With ``--callgrind``: instructions executed in the
            window per message delivered in it, by process (``server``, ``writer``).
    """

    server: str
    devices: int
    target_rate: float | None
    window: int
    duration_s: float
    sent: int
    accepted: int
    delivered: int
    accepted_per_s: float
    delivered_per_s: float
    receipts: int
    undelivered: int
    errors: dict[str, int]
    latency: LatencySummary | None
    server_cpu_pct: float
    server_rss_mib: float
    generator_cpu_pct: float
    generator_max_lag_ms: float
    load_avg_1m: float = 0.0
    instructions_per_message: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class IdleResult:
    """Server memory per connected idle device."""

    devices: int
    connected: int
    rss_before_mib: float
    rss_after_mib: float
    bytes_per_device: float
    settle_s: float


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What to run.

    Attributes:
        devices: Simulated devices (each its own account and WebSocket).
        workers: Generator processes.
        rates: One phase per entry: offered messages/s, ``None`` = as fast as accepted.
        duration_s: Counted seconds per phase.
        warmup_s: Seconds of sending before counting, per phase.
        window: Sends in flight per device in the as-fast-as-accepted mode.
        payload_bytes: Message body size (opaque, like a ciphertext).
        drain_s: Longest wait after a phase for outstanding deliveries.
        data_dir: The server's data directory; ``None``: a fresh temporary one.
        database: A PostgreSQL server DSN (``postgresql://user@host:port/db``): the run
            creates a fresh database on it, uses it, and drops it; ``None``: SQLite.
        redis: ``redis://...`` shared by the nodes (required when ``nodes`` > 1).
        nodes: ``kurir serve`` processes sharing ``database`` and ``redis``.
        pin_cpus: Start the server with ``--pin-cpus`` (SQLite only).
        callgrind: Run the server under callgrind, writing there, and count its instructions
            per delivered message in each window (:mod:`kurir.bench.instructions`; one node).
    """

    devices: int = 100
    workers: int = 1
    rates: tuple[float | None, ...] = (None,)
    duration_s: float = 10.0
    warmup_s: float = 2.0
    window: int = 1
    payload_bytes: int = 200
    drain_s: float = 10.0
    data_dir: Path | None = None
    database: str | None = None
    redis: str | None = None
    nodes: int = 1
    pin_cpus: bool = False
    callgrind: Path | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("nodes must be >= 1")
        if self.nodes > 1 and (self.database is None or self.redis is None):
            raise ValueError("several nodes need a database and redis")
        if self.pin_cpus and self.database is not None:
            raise ValueError("--pin-cpus is for the SQLite engine")
        if self.callgrind is not None and self.nodes > 1:
            raise ValueError("instructions are counted for one node")


def percentiles(latencies_ns: Sequence[int]) -> LatencySummary | None:
    """p50/p99/p99.9/max/mean (nearest rank) of nanosecond latencies, in ms."""
    n = len(latencies_ns)
    if n == 0:
        return None
    ordered = sorted(latencies_ns)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * n) - 1)] / 1e6

    return LatencySummary(
        n, rank(0.50), rank(0.99), rank(0.999), ordered[-1] / 1e6, sum(ordered) / n / 1e6
    )


def machine_info() -> dict[str, Any]:
    """The machine a result came from."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        mem = int(f.readline().split()[1]) * 1024
    revision = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        revision = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - informational only
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
            check=False,
        ).stdout.strip()
    return {
        "kurir_revision": revision,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem / 1024**3, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


@contextlib.contextmanager
def _data_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    # on the same disk as the repository by default: /tmp may be a RAM disk, and the
    # durability being measured is an fsync to a real disk
    tmp = Path(tempfile.mkdtemp(prefix="kurir-bench-", dir=os.environ.get("KURIR_BENCH_TMP")))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _raw_workers(
    server: ServerProcess,
    devices: list[DeviceCredentials],
    count: int,
    payload_bytes: int,
    *,
    more_servers: Sequence[ServerProcess] = (),
) -> WorkerPool:
    targets = tuple((str(d.account_id), d.registration_id) for d in devices)
    count = max(1, min(count, len(devices)))
    ports = [s.port for s in (server, *more_servers)]
    configs = [
        WorkerConfig(
            worker_id=w,
            host=server.host,
            port=server.port,
            devices=tuple(devices[w::count]),
            targets=targets,
            payload_bytes=payload_bytes,
            # device i (of the whole run) connects to node i mod K: round-robin
            device_ports=(
                tuple(ports[i % len(ports)] for i in range(w, len(devices), count))
                if more_servers
                else ()
            ),
        )
        for w in range(count)
    ]
    return WorkerPool(worker_main, configs)


class WorkerPool:
    """Generator processes, their pipes and shared counters.

    Each process runs ``target(config, pipe, counters)`` for one of ``configs`` and speaks the
    command protocol of :mod:`kurir.bench.worker` (``phase``, ``collect``, ``stop``).
    """

    def __init__(self, target: Callable[..., None], configs: Sequence[object]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.counters: list[Any] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for w, config in enumerate(configs):
            parent, child = ctx.Pipe()
            counters = ctx.Array("q", COUNTERS, lock=False)
            process = ctx.Process(
                target=target, args=(config, child, counters), name=f"kurir-bench-{w}"
            )
            process.start()
            child.close()
            self.conns.append(parent)
            self.counters.append(counters)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def total(self, index: int) -> int:
        return sum(int(c[index]) for c in self.counters)

    def wait_ready(self, expected: int, progress: Progress | None) -> None:
        ready = 0
        pending = list(self.conns)
        while pending:
            for conn in list(pending):
                if conn.poll(_SAMPLE_S):
                    message = conn.recv()
                    pending.remove(conn)
                    if message[0] != "ready":
                        raise RuntimeError(f"a generator process failed: {message[1]}")
                    ready += int(message[1])
            if progress is not None:
                progress("connecting", self.total(C_CONNECTED), expected)
            if any(not p.is_alive() for p in self.processes) and pending:
                raise RuntimeError("a generator process died while connecting")

    def broadcast(self, message: tuple[Any, ...]) -> None:
        for conn in self.conns:
            conn.send(message)

    def collect(self) -> list[PhaseStats]:
        self.broadcast(("collect",))
        stats: list[PhaseStats] = []
        for conn in self.conns:
            kind, value = conn.recv()
            if kind != "stats" or not isinstance(value, PhaseStats):
                raise RuntimeError("a generator process sent no statistics")
            stats.append(value)
        return stats

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self.conns:
            conn.close()


def _register(server: ServerProcess, count: int, progress: Progress | None) -> list[Any]:
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None and (done % 10 == 0 or done == count):
            progress("registering", done, count)

    return asyncio.run(register_devices(server.base_url, count, progress=step))


def run_phase(
    server: ServerProcess,
    workers: WorkerPool,
    options: LoadOptions,
    phase_id: int,
    rate: float | None,
    progress: Progress | None,
    *,
    label_server: str = "kurir",
    more_servers: Sequence[ServerProcess] = (),
    counter: InstructionCounter | None = None,
) -> PhaseResult:
    share = None if rate is None else rate / len(workers.conns)
    spec = PhaseSpec(
        phase_id=phase_id,
        start_ns=time.monotonic_ns() + _START_DELAY_NS,
        warmup_s=options.warmup_s,
        duration_s=options.duration_s,
        rate=share,
        window=options.window,
    )
    workers.broadcast(("phase", spec))
    label = "max" if rate is None else f"{rate:,.0f}/s"

    def sleep_until(ns: int) -> None:
        while (left := ns - time.monotonic_ns()) > 0:
            time.sleep(min(left / 1e9, _SAMPLE_S))
            if progress is not None:
                elapsed = (time.monotonic_ns() - spec.start_ns) / 1e9
                total = options.warmup_s + options.duration_s
                delivered = workers.total(C_DELIVERED)
                progress(f"{label}: {delivered:,} delivered", max(0.0, elapsed), total)

    sleep_until(spec.count_from_ns)
    server_pids = family([server.pid, *(s.pid for s in more_servers)])  # with their writers
    if counter is not None:
        counter.open_window(server_pids)
    server_before = cpu_total(server_pids)
    gen_before = cpu_total(workers.pids)
    peak = sum(rss_bytes(pid) for pid in server_pids)
    while time.monotonic_ns() < spec.end_ns:
        sleep_until(min(spec.end_ns, time.monotonic_ns() + int(_SAMPLE_S * 1e9)))
        with contextlib.suppress(OSError):
            peak = max(peak, sum(rss_bytes(pid) for pid in server_pids))
    server_after = cpu_total(server_pids)
    gen_after = cpu_total(workers.pids)
    load_avg = os.getloadavg()[0]
    counted = None if counter is None else counter.close_window(server_pids)
    deadline = time.monotonic() + options.drain_s
    while time.monotonic() < deadline:
        sent, accepted = workers.total(C_SENT), workers.total(C_ACCEPTED)
        errors, delivered = workers.total(C_ERRORS), workers.total(C_DELIVERED)
        if accepted + errors >= sent and delivered >= accepted:
            break
        time.sleep(0.05)
    stats = workers.collect()
    latencies: array[int] = array("q")
    errors_by_code: dict[str, int] = {}
    for s in stats:
        latencies.extend(s.latencies_ns)
        for code, n in s.errors.items():
            errors_by_code[code] = errors_by_code.get(code, 0) + n
    accepted = sum(s.accepted for s in stats)
    delivered = sum(s.delivered for s in stats)
    in_window = sum(s.delivered_in_window for s in stats)
    return PhaseResult(
        server=label_server,
        devices=workers.total(C_CONNECTED),
        target_rate=rate,
        window=options.window,
        duration_s=options.duration_s,
        sent=sum(s.sent for s in stats),
        accepted=accepted,
        delivered=delivered,
        accepted_per_s=sum(s.accepted_in_window for s in stats) / options.duration_s,
        delivered_per_s=in_window / options.duration_s,
        receipts=sum(s.receipts for s in stats),
        undelivered=max(0, accepted - delivered),
        errors=errors_by_code,
        latency=percentiles(latencies),
        server_cpu_pct=cpu_percent(server_before, server_after),
        server_rss_mib=peak / _MIB,
        generator_cpu_pct=cpu_percent(gen_before, gen_after),
        generator_max_lag_ms=max(s.max_lag_ns for s in stats) / 1e6,
        load_avg_1m=load_avg,
        instructions_per_message=None
        if counted is None
        else {
            "server" if pid == server.pid else "writer": n / max(in_window, 1)
            for pid, n in counted.items()
        },
    )


def run_load(
    options: LoadOptions,
    *,
    progress: Progress | None = None,
    on_phase: Callable[[PhaseResult], None] | None = None,
    server_ready: Callable[[int], None] | None = None,
) -> list[PhaseResult]:
    """Run every phase of ``options`` against a fresh ``kurir serve``; return the results.

    Args:
        options: The workload.
        progress: Called as the run advances.
        on_phase: Called with each phase's result as soon as it is measured.
        server_ready: Called with the server's pid once it listens (e.g. to attach a
            profiler).

    Raises:
        RuntimeError: The server or a generator process failed.
        RegistrationFailed: The server refused a registration.
    """
    raise_fd_limit()
    results: list[PhaseResult] = []
    run_id = secrets.token_hex(4)
    node_ids = [f"bench-{run_id}-{n + 1}" for n in range(options.nodes)]
    devices: list[DeviceCredentials] = []
    with _data_dir(options.data_dir) as data_dir, _bench_database(options.database) as db:
        servers: list[ServerProcess] = []
        workers: WorkerPool | None = None
        try:
            for n in range(options.nodes):
                extra: tuple[str, ...] = ("--pin-cpus",) if options.pin_cpus else ()
                if db is not None:
                    extra += ("--database", db)
                if options.redis is not None:
                    extra += ("--redis", options.redis, "--node-id", node_ids[n])
                node_dir = data_dir if options.nodes == 1 else data_dir / f"node-{n + 1}"
                node_dir.mkdir(parents=True, exist_ok=True)
                wrap = () if options.callgrind is None else wrapper(options.callgrind)
                servers.append(
                    start_kurir_server(
                        node_dir, extra_args=extra, wrapper=wrap, timeout_s=600.0 if wrap else 60.0
                    )
                )
            server, more = servers[0], servers[1:]
            devices = _register(server, options.devices, progress)
            workers = _raw_workers(
                server, devices, options.workers, options.payload_bytes, more_servers=more
            )
            workers.wait_ready(len(devices), progress)
            if server_ready is not None:
                server_ready(server.pid)
            counter = None if options.callgrind is None else InstructionCounter(options.callgrind)
            for phase_id, rate in enumerate(options.rates, 1):
                result = run_phase(
                    server,
                    workers,
                    options,
                    phase_id,
                    rate,
                    progress,
                    more_servers=more,
                    counter=counter,
                )
                if not all(s.alive() for s in servers):
                    raise RuntimeError("a server exited during the run")
                results.append(result)
                if on_phase is not None:
                    on_phase(result)
        finally:
            if workers is not None:
                workers.stop()
            for s in servers:
                s.stop()
            if options.redis is not None:
                _delete_redis_keys(options.redis, devices, node_ids)
    return results


@contextlib.contextmanager
def _bench_database(server_dsn: str | None) -> Iterator[str | None]:
    """A fresh database ``kurir_bench_<random>`` on ``server_dsn``'s server, dropped after."""
    if server_dsn is None:
        yield None
        return
    import asyncpg  # only for PostgreSQL runs

    name = f"kurir_bench_{secrets.token_hex(6)}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(server_dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        parts = urllib.parse.urlsplit(server_dsn)
        yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _delete_redis_keys(url: str, devices: Sequence[DeviceCredentials], nodes: list[str]) -> None:
    """Delete the Redis keys of this run's devices and nodes (kurir.server.routing_redis):
    nothing else in that Redis database is touched."""
    import redis  # only for multi-node runs

    accounts = {str(d.account_id) for d in devices}
    client = redis.Redis.from_url(url)
    try:
        doomed: list[bytes] = []
        for node in nodes:
            doomed.extend(client.scan_iter(match=f"kurir:node:{{{node}}}*", count=1000))
        for key in client.scan_iter(match="kurir:dev:*", count=1000):
            account = key.decode(errors="replace").split("{", 1)[-1].split("}", 1)[0]
            if account in accounts:
                doomed.append(key)
        for i in range(0, len(doomed), 1000):
            client.delete(*doomed[i : i + 1000])
    finally:
        client.close()


def run_idle(
    devices: int,
    *,
    workers: int = 1,
    settle_s: float = 5.0,
    data_dir: Path | None = None,
    progress: Progress | None = None,
    trace_to: Path | None = None,
) -> IdleResult:
    """Connect ``devices`` idle devices; report the server's RSS growth per device.

    The baseline is taken after registration (so the accounts' own memory is not counted)
    and after ``settle_s`` seconds; the second reading after every device received its
    ``drained`` and another ``settle_s`` seconds. With ``trace_to``, the server runs with
    the ``tracemalloc`` variant and writes an allocation snapshot at both readings
    (``trace_to.1`` and ``trace_to.2``; tracing itself costs memory, so RSS is then higher).
    """
    raise_fd_limit()
    variants: tuple[str, ...] = ()
    if trace_to is not None:
        variants = ("tracemalloc",)
        os.environ["KURIR_TRACEMALLOC_OUT"] = str(trace_to.resolve())
    with _data_dir(data_dir) as directory:
        server = start_kurir_server(directory, variants=variants)
        pool: WorkerPool | None = None
        try:
            creds = _register(server, devices, progress)
            time.sleep(settle_s)
            before = sum(rss_bytes(pid) for pid in family([server.pid]))
            if trace_to is not None:
                _snapshot(server, trace_to, 1)
            pool = _raw_workers(server, creds, workers, 200)
            pool.wait_ready(len(creds), progress)
            time.sleep(settle_s)
            after = sum(rss_bytes(pid) for pid in family([server.pid]))
            if trace_to is not None:
                _snapshot(server, trace_to, 2)
            connected = pool.total(C_CONNECTED)
        finally:
            if pool is not None:
                pool.stop()
            server.stop()
    return IdleResult(
        devices=devices,
        connected=connected,
        rss_before_mib=before / _MIB,
        rss_after_mib=after / _MIB,
        bytes_per_device=(after - before) / max(connected, 1),
        settle_s=settle_s,
    )


def _snapshot(server: ServerProcess, trace_to: Path, n: int) -> None:
    target = trace_to.with_name(f"{trace_to.name}.{n}")
    target.unlink(missing_ok=True)
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not target.exists():  # written whole by an atomic rename
        if time.monotonic() > deadline:
            raise RuntimeError("the server wrote no allocation snapshot")
        time.sleep(0.1)


def allocation_growth(trace_to: Path, devices: int, *, top: int = 15) -> list[tuple[str, float]]:
    """Which code holds the growth between the idle run's two snapshots, bytes per device."""
    before = tracemalloc.Snapshot.load(str(trace_to.with_name(f"{trace_to.name}.1")))
    after = tracemalloc.Snapshot.load(str(trace_to.with_name(f"{trace_to.name}.2")))
    stats = after.compare_to(before, "lineno")
    rows = [
        (
            f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}",
            s.size_diff / max(devices, 1),
        )
        for s in stats[:top]
    ]
    total = sum(s.size_diff for s in stats) / max(devices, 1)
    return [("all traced Python allocations", total), *rows]
