"""The SDK mode of ``kurir bench``: devices that are real :class:`kurir.client.Client` objects.

This module owns the workload when every simulated device is the SDK an app embeds: it
registers (publishing real prekeys), starts Signal sessions (PQXDH) on first contact, encrypts
every message with the Double Ratchet, keeps its state in its own SQLite store, decrypts what it
receives and acknowledges it. The send time travels inside the (encrypted) text, so latency is
send-to-decrypted-receipt. Results are :class:`~kurir.bench.load.PhaseResult` rows labelled
``kurir-sdk``.

The server limits verification requests to 30 per client host and the SDK connects from
127.0.0.1, so this mode runs at most :data:`MAX_SDK_DEVICES` devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from kurir.bench.load import LoadOptions, PhaseResult, Progress, WorkerPool, run_phase
from kurir.bench.procs import read_commands, start_kurir_server
from kurir.bench.register import address_of, client_key
from kurir.bench.worker import (
    C_ACCEPTED,
    C_CONNECTED,
    C_DELIVERED,
    C_ERRORS,
    C_SENT,
    PhaseSpec,
    PhaseStats,
)
from kurir.client import Client, ClientError, DeliveryEvent, MessageEvent, Text

__all__ = ["MAX_SDK_DEVICES", "SdkConfig", "run_sdk", "sdk_worker_main"]

MAX_SDK_DEVICES: Final = 25
_FILLER: Final = "x" * 100  # ~200 bytes of ciphertext per message, like the raw mode


@dataclass(frozen=True, slots=True)
class SdkConfig:
    """What an SDK worker process is given."""

    worker_id: int
    base_url: str
    indices: tuple[int, ...]
    all_indices: tuple[int, ...]
    profiles: str


class _SdkWorker:
    def __init__(self, config: SdkConfig, counters: Any) -> None:
        self.config = config
        self.counters = counters
        self.clients: dict[int, Client] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self.phase: PhaseSpec | None = None
        self.stats = PhaseStats()
        self.tasks: set[asyncio.Task[None]] = set()

    def error(self, code: str) -> None:
        self.stats.error(code)
        self.counters[C_ERRORS] += 1

    async def open_all(self) -> None:
        key = client_key()
        for index in self.config.indices:
            profile = Path(self.config.profiles) / f"device-{index}"
            client = await Client.open(profile, self.config.base_url, app_key=key)
            await client.register(address_of(index))
            await client.connect()
            await client.wait_drained()
            self.clients[index] = client
            self.locks[index] = asyncio.Lock()
            self.counters[C_CONNECTED] += 1
            task = asyncio.create_task(self._receive(client))
            self.tasks.add(task)

    async def close_all(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients.values():
            with contextlib.suppress(ClientError, OSError):
                await client.close()

    async def _receive(self, client: Client) -> None:
        async for event in client.events():
            now = time.monotonic_ns()
            phase = self.phase
            if isinstance(event, DeliveryEvent):
                self.stats.receipts += 1
                continue
            if phase is None or not isinstance(event, MessageEvent):
                continue
            body = event.body
            if not isinstance(body, Text):
                continue
            stamp_text, phase_text, _ = body.text.split(" ", 2)
            if int(phase_text) != phase.phase_id:
                continue
            stamp = int(stamp_text)
            self.stats.delivered += 1
            self.counters[C_DELIVERED] += 1
            if phase.count_from_ns <= now < phase.end_ns:
                self.stats.delivered_in_window += 1
            if phase.count_from_ns <= stamp < phase.end_ns:
                self.stats.latencies_ns.append(now - stamp)

    async def send(self, index: int, stamp: int) -> None:
        phase = self.phase
        if phase is None:
            return
        others = [i for i in self.config.all_indices if i != index]
        target = random.choice(others)  # noqa: S311 - a workload choice, not a secret
        self.stats.sent += 1
        self.counters[C_SENT] += 1
        async with self.locks[index]:
            try:
                await self.clients[index].send_text(
                    address_of(target), f"{stamp} {phase.phase_id} {_FILLER}"
                )
            except ClientError as exc:
                self.error(type(exc).__name__)
                return
        self.stats.accepted += 1
        self.counters[C_ACCEPTED] += 1
        if phase.count_from_ns <= time.monotonic_ns() < phase.end_ns:
            self.stats.accepted_in_window += 1

    async def run_phase(self, spec: PhaseSpec) -> None:
        self.phase = spec
        self.stats = PhaseStats()
        for i in (C_SENT, C_ACCEPTED, C_DELIVERED, C_ERRORS):
            self.counters[i] = 0
        await asyncio.sleep(max(0.0, (spec.start_ns - time.monotonic_ns()) / 1e9))
        if spec.rate is None:

            async def closed_loop(index: int) -> None:
                while (now := time.monotonic_ns()) < spec.end_ns:
                    await self.send(index, now)

            await asyncio.gather(*(closed_loop(i) for i in self.clients))
            return
        interval = 1e9 / spec.rate
        total = math.ceil((spec.end_ns - spec.start_ns) / interval)
        pending: set[asyncio.Task[None]] = set()
        indices = list(self.clients)
        k = 0
        while k < total:
            now = time.monotonic_ns()
            due = min(total, int((now - spec.start_ns) / interval) + 1)
            while k < due:
                intended = spec.start_ns + int(k * interval)
                self.stats.max_lag_ns = max(self.stats.max_lag_ns, now - intended)
                chosen = random.choice(indices)  # noqa: S311 - workload, not a secret
                task = asyncio.create_task(self.send(chosen, intended))
                pending.add(task)
                task.add_done_callback(pending.discard)
                k += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*pending)


async def _serve(config: SdkConfig, conn: Connection, counters: Any) -> None:
    worker = _SdkWorker(config, counters)
    loop = asyncio.get_running_loop()
    try:
        await worker.open_all()
    except (ClientError, OSError) as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        await worker.close_all()
        return
    conn.send(("registered", len(worker.clients)))
    commands = read_commands(conn)
    phase_task: asyncio.Task[None] | None = None
    try:
        while True:
            command = await commands.get()
            match command:
                case ("go",):
                    conn.send(("ready", len(worker.clients)))
                case ("phase", PhaseSpec() as spec):
                    phase_task = asyncio.create_task(worker.run_phase(spec))
                case ("collect",):
                    if phase_task is not None:
                        await phase_task
                    conn.send(("stats", worker.stats))
                case _:
                    break
    finally:
        loop.remove_reader(conn.fileno())
        await worker.close_all()


def sdk_worker_main(config: SdkConfig, conn: Connection, counters: Any) -> None:
    """Entry point of an SDK worker process."""
    asyncio.run(_serve(config, conn, counters))
    with contextlib.suppress(OSError):
        conn.close()


def run_sdk(
    devices: int,
    *,
    rates: tuple[float | None, ...] = (None,),
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[PhaseResult]:
    """Run the phases with ``devices`` SDK clients spread over ``workers`` processes.

    Raises:
        ValueError: More than :data:`MAX_SDK_DEVICES` devices.
        RuntimeError: The server or a worker failed.
    """
    if not 2 <= devices <= MAX_SDK_DEVICES:
        raise ValueError(f"the SDK mode runs 2 to {MAX_SDK_DEVICES} devices")
    workers = max(1, min(workers, devices))
    options = LoadOptions(
        devices=devices, workers=workers, rates=rates, duration_s=duration_s, warmup_s=warmup_s
    )
    results: list[PhaseResult] = []
    directory = Path(tempfile.mkdtemp(prefix="kurir-bench-sdk-"))
    try:
        server = start_kurir_server(directory / "server")
        pool: WorkerPool | None = None
        try:
            everyone = tuple(range(devices))
            configs = [
                SdkConfig(w, server.base_url, everyone[w::workers], everyone, str(directory))
                for w in range(workers)
            ]
            pool = WorkerPool(sdk_worker_main, configs)
            for conn in pool.conns:  # every device registered before anyone sends
                kind, value = conn.recv()
                if kind != "registered":
                    raise RuntimeError(f"an SDK worker failed: {value}")
            pool.broadcast(("go",))
            pool.wait_ready(devices, progress)
            for phase_id, rate in enumerate(rates, 1):
                results.append(
                    run_phase(
                        server, pool, options, phase_id, rate, progress, label_server="kurir-sdk"
                    )
                )
        finally:
            if pool is not None:
                pool.stop()
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results
