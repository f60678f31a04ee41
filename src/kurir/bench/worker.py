"""One load-generator process: many simulated devices, each on its own WebSocket.

This module owns what a simulated device does on the wire (docs/protocol.md §7): open the
WebSocket with its credentials, wait for ``drained``, send ``send`` frames carrying an opaque
payload to random other devices (at a fixed rate shared by the process, or keeping a window of
sends in flight per device), acknowledge every envelope and receipt it receives, and count:
accepted (``result`` ok), errors by code, delivered envelopes and the latency from send to
receipt. The send time travels inside the payload (``CLOCK_MONOTONIC`` is one clock for every
process of the machine), so latency is measured by the receiving process.

The process is driven by the parent (:mod:`kurir.bench.load`) through a pipe: ``phase``
starts a measurement phase, ``collect`` returns its statistics, ``stop`` ends. Live counters
for the progress bar go through shared memory. It runs uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import struct
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any, Final, cast
from uuid import UUID

import msgspec

from kurir.bench.procs import raise_fd_limit, read_commands
from kurir.bench.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameParser,
    HandshakeError,
    ProtocolViolation,
    WsFrame,
    check_handshake,
    encode_frame,
    handshake_request,
)
from kurir.bench.register import DeviceCredentials
from kurir.wire.frames import (
    Ack,
    DeviceMessage,
    Drained,
    Envelope,
    EnvelopeType,
    ErrorFrame,
    Result,
    Send,
    ServerFrame,
)
from kurir.wire.message_id import new_message_id

__all__ = [
    "COUNTERS",
    "C_ACCEPTED",
    "C_CONNECTED",
    "C_DELIVERED",
    "C_ERRORS",
    "C_SENT",
    "PhaseSpec",
    "PhaseStats",
    "WorkerConfig",
    "worker_main",
]

C_SENT, C_ACCEPTED, C_DELIVERED, C_ERRORS, C_CONNECTED = range(5)
COUNTERS: Final = 5
"""Shared counters per worker: sent, accepted, delivered (of the current phase), errors,
connected devices."""

_STAMP: Final = struct.Struct("<qI")  # send time (monotonic ns), phase id
_PHASE_SHIFT: Final = 40
_CONNECT_CONCURRENCY: Final = 64
_TICK_S: Final = 0.001
_encode: Final = msgspec.msgpack.Encoder().encode
_decode_server: Final = msgspec.msgpack.Decoder(ServerFrame).decode


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker process is given at start.

    Attributes:
        worker_id: Its number (0..).
        host: Server host.
        port: Server port.
        devices: The devices this process drives.
        targets: Every device of the run as (account id, registration id), by index.
        payload_bytes: Size of each message body (at least 12).
        connect_from: Loopback source addresses to spread connections over.
        device_ports: If not empty, the server port of each of ``devices`` (several nodes);
            otherwise every device connects to ``port``.
    """

    worker_id: int
    host: str
    port: int
    devices: tuple[DeviceCredentials, ...]
    targets: tuple[tuple[str, int], ...]
    payload_bytes: int
    connect_from: tuple[str, ...] = ("127.0.0.1",)
    device_ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """One measurement phase.

    Attributes:
        phase_id: 1.. (travels in payloads and request ids).
        start_ns: ``time.monotonic_ns()`` at which sending starts.
        warmup_s: Seconds of sending before counting starts.
        duration_s: Seconds counted.
        rate: Messages per second this worker sends, or ``None``: as fast as accepted.
        window: In the as-fast-as-accepted mode, sends in flight per device.
    """

    phase_id: int
    start_ns: int
    warmup_s: float
    duration_s: float
    rate: float | None
    window: int = 1

    @property
    def count_from_ns(self) -> int:
        """When counting starts."""
        return self.start_ns + int(self.warmup_s * 1e9)

    @property
    def end_ns(self) -> int:
        """When sending stops."""
        return self.count_from_ns + int(self.duration_s * 1e9)


@dataclass(slots=True)
class PhaseStats:
    """What one worker counted in one phase.

    ``*_in_window`` count events whose time is inside the counted window; ``accepted`` and
    ``delivered`` count every event of the phase (for the check that everything arrived).
    ``latencies_ns`` hold send-to-receipt times of messages sent inside the window.
    """

    sent: int = 0
    accepted: int = 0
    delivered: int = 0
    accepted_in_window: int = 0
    delivered_in_window: int = 0
    receipts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    max_lag_ns: int = 0

    def error(self, code: str) -> None:
        """Count one error."""
        self.errors[code] = self.errors.get(code, 0) + 1


class _Worker:
    """The shared state of one process's devices."""

    def __init__(self, config: WorkerConfig, counters: SynchronizedArray[Any]) -> None:
        self.config = config
        self.counters = counters
        self.targets = [(UUID(a), r) for a, r in config.targets]
        self.filler = os.urandom(max(config.payload_bytes - _STAMP.size, 0))
        self.phase: PhaseSpec | None = None
        self.stats = PhaseStats()
        self.counter = 0
        self.devices: list[_Device] = []

    def start_phase(self, spec: PhaseSpec) -> None:
        self.phase = spec
        self.stats = PhaseStats()
        for i in (C_SENT, C_ACCEPTED, C_DELIVERED, C_ERRORS):
            self.counters[i] = 0

    def in_window(self, now: int) -> bool:
        phase = self.phase
        return phase is not None and phase.count_from_ns <= now < phase.end_ns

    def sending(self, now: int) -> bool:
        phase = self.phase
        return phase is not None and now < phase.end_ns

    def send(self, device: _Device, stamp: int) -> None:
        phase = self.phase
        if phase is None or device.closed:
            return
        n = len(self.targets)
        target = random.randrange(n - 1) if n > 1 else 0  # noqa: S311 - workload, not a secret
        if target >= device.creds.index and n > 1:
            target += 1  # never oneself
        account, registration_id = self.targets[target]
        self.counter += 1
        now_ms = time.time_ns() // 1_000_000
        frame = Send(
            id=(phase.phase_id << _PHASE_SHIFT) | self.counter,
            to=account,
            message_id=new_message_id(now_ms, random.randbytes),
            timestamp=now_ms,
            messages=[
                DeviceMessage(
                    device=1,
                    registration_id=registration_id,
                    type=EnvelopeType.CIPHERTEXT,
                    body=_STAMP.pack(stamp, phase.phase_id) + self.filler,
                )
            ],
        )
        device.write(_encode(frame))
        device.outstanding += 1
        self.stats.sent += 1
        self.counters[C_SENT] += 1

    def on_result(self, device: _Device, result: Result) -> None:
        device.outstanding -= 1
        phase = self.phase
        if phase is None or result.id >> _PHASE_SHIFT != phase.phase_id:
            return
        now = time.monotonic_ns()
        if result.ok:
            self.stats.accepted += 1
            self.counters[C_ACCEPTED] += 1
            if self.in_window(now):
                self.stats.accepted_in_window += 1
        else:
            self.stats.error(result.error.code if result.error is not None else "unknown")
            self.counters[C_ERRORS] += 1
        if phase.rate is None and now < phase.end_ns:
            self.send(device, now)

    def on_envelope(self, env: Envelope, now: int) -> None:
        if env.type == EnvelopeType.SERVER_DELIVERY_RECEIPT:
            self.stats.receipts += 1
            return
        phase = self.phase
        if phase is None or len(env.body) < _STAMP.size:
            return
        stamp, phase_id = _STAMP.unpack_from(env.body)
        if phase_id != phase.phase_id:
            return
        self.stats.delivered += 1
        self.counters[C_DELIVERED] += 1
        if phase.count_from_ns <= now < phase.end_ns:
            self.stats.delivered_in_window += 1
        if phase.count_from_ns <= stamp < phase.end_ns:
            self.stats.latencies_ns.append(now - stamp)

    def error(self, code: str) -> None:
        self.stats.error(code)
        self.counters[C_ERRORS] += 1


class _Device(asyncio.Protocol):
    """One simulated device's WebSocket (raw codec over an asyncio transport)."""

    def __init__(self, worker: _Worker, creds: DeviceCredentials, host: str) -> None:
        self.worker = worker
        self.creds = creds
        self.request, self.key = handshake_request(
            host, "/v1/ws", {"Authorization": creds.authorization}
        )
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.upgraded = False
        self.parser = FrameParser()
        self.outstanding = 0
        self.closed = False
        # frames written while a read is handled, sent in one write at its end (an ack and the
        # next send after a result usually go together, as a client's would): a system call
        # per frame was about a quarter of the generator's time
        self.held: list[bytes] | None = None
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.worker.error("connection_lost")
        if not self.drained.done():
            self.drained.set_exception(ConnectionError("closed before drained"))

    def write(self, message: bytes) -> None:
        if self.transport is not None and not self.closed:
            if self.held is not None:
                self.held.append(encode_frame(OP_BINARY, message))
            else:
                self.transport.write(encode_frame(OP_BINARY, message))

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                check_handshake(self.head[:end], self.key)
            except HandshakeError as exc:
                self._fail(f"handshake: {exc}")
                return
            self.upgraded = True
            data = self.head[end + 4 :]
            self.head = b""
        try:
            frames = self.parser.feed(data)
        except ProtocolViolation:
            self._fail("protocol_violation")
            return
        held: list[bytes] = []
        self.held = held
        try:
            self._handle(frames)
        finally:
            self.held = None
        if held and self.transport is not None and not self.closed:
            self.transport.write(b"".join(held))

    def _handle(self, frames: list[WsFrame]) -> None:
        worker = self.worker
        acks: list[int] = []
        now = time.monotonic_ns()
        for frame in frames:
            if frame.opcode == OP_BINARY:
                message = _decode_server(frame.payload)
                if isinstance(message, Envelope):
                    worker.on_envelope(message, now)
                    acks.append(message.seq)
                elif isinstance(message, Result):
                    worker.on_result(self, message)
                elif isinstance(message, Drained):
                    if not self.drained.done():
                        self.drained.set_result(None)
                elif isinstance(message, ErrorFrame):
                    worker.error(message.code)
            elif frame.opcode == OP_PING:
                if self.transport is not None:
                    self.transport.write(encode_frame(OP_PONG, frame.payload))
            elif frame.opcode == OP_CLOSE:
                code = int.from_bytes(frame.payload[:2], "big") if frame.payload else 1005
                self._fail(f"closed_{code}")
                return
        if acks:
            self.write(_encode(Ack(seqs=acks)))

    def _fail(self, code: str) -> None:
        if not self.closed:
            self.closed = True
            self.worker.error(code)
        if not self.drained.done():
            self.drained.set_exception(ConnectionError(code))
        if self.transport is not None:
            self.transport.close()


async def _connect_all(worker: _Worker) -> None:
    loop = asyncio.get_running_loop()
    config = worker.config
    limit = asyncio.Semaphore(_CONNECT_CONCURRENCY)

    async def one(i: int, creds: DeviceCredentials) -> None:
        source = config.connect_from[i % len(config.connect_from)]
        port = config.device_ports[i] if config.device_ports else config.port
        host_header = f"{config.host}:{port}"
        async with limit:
            _, device = await loop.create_connection(
                lambda: _Device(worker, creds, host_header),
                config.host,
                port,
                local_addr=(source, 0),
            )
            worker.devices.append(device)
            await device.drained
            worker.counters[C_CONNECTED] += 1

    await asyncio.gather(*(one(i, c) for i, c in enumerate(config.devices)))


async def _run_phase(worker: _Worker, spec: PhaseSpec) -> None:
    worker.start_phase(spec)
    delay = (spec.start_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
    devices = [d for d in worker.devices if not d.closed]
    if not devices:
        return
    if spec.rate is None:
        now = time.monotonic_ns()
        for device in devices:
            for _ in range(spec.window):
                worker.send(device, now)
        return
    interval_ns = 1e9 / spec.rate
    # every send scheduled before the end is made, late if the process fell behind (the lag
    # is recorded): an open-loop schedule, so the offered load does not bend to the server
    total = math.ceil((spec.end_ns - spec.start_ns) / interval_ns)
    k = 0
    choice = random.choice
    while k < total:
        now = time.monotonic_ns()
        due = min(total, int((now - spec.start_ns) / interval_ns) + 1)
        while k < due:
            intended = spec.start_ns + int(k * interval_ns)
            worker.stats.max_lag_ns = max(worker.stats.max_lag_ns, now - intended)
            worker.send(choice(devices), intended)
            k += 1
        if k < total:
            await asyncio.sleep(_TICK_S)


async def _serve(config: WorkerConfig, conn: Connection, counters: SynchronizedArray[Any]) -> None:
    worker = _Worker(config, counters)
    loop = asyncio.get_running_loop()
    try:
        await _connect_all(worker)
    except (OSError, ConnectionError) as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", len(worker.devices)))
    commands = read_commands(conn)
    phase_task: asyncio.Task[None] | None = None
    try:
        while True:
            command = await commands.get()
            match command:
                case ("phase", PhaseSpec() as spec):
                    phase_task = asyncio.create_task(_run_phase(worker, spec))
                case ("collect",):
                    if phase_task is not None:
                        await phase_task
                    conn.send(("stats", worker.stats))
                case _:
                    break
    finally:
        loop.remove_reader(conn.fileno())
        if phase_task is not None:
            phase_task.cancel()
        for device in worker.devices:
            if device.transport is not None:
                device.closed = True
                device.transport.close()


def worker_main(config: WorkerConfig, conn: Connection, counters: SynchronizedArray[Any]) -> None:
    """Entry point of a worker process (``multiprocessing``, spawn)."""
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(config, conn, counters))
    else:
        uvloop.run(_serve(config, conn, counters))
    with contextlib.suppress(OSError):
        conn.close()
