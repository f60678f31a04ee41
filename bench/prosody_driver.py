"""Prosody (XMPP) on the comparison's workload: server setup and a raw XML-stream load client.

Owns: a throwaway Prosody configuration (loopback, no TLS, in-band registration, internal
storage, c2s rate limits lifted, run as a foreground child), registering users in band
(XEP-0077), SASL PLAIN login, and the workload: each user sends ``<message type='chat'>`` with a
~200-byte body to a random other user and receives messages on its own stream.

XMPP has no per-message acceptance in the core protocol, so after every message the client sends
an XMPP ping to the server (XEP-0199); stanzas of one stream are processed in order, so the
ping's answer says the server has routed the message. That is acceptance *in memory*: Prosody
hands a message for an online user straight to its stream and stores nothing, unlike kurir
(durable before ``result``) and Synapse (event persisted). The comparison is therefore
favourable to Prosody. Used by ``bench/synapse_compare.py --xmpp``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import shutil
import subprocess
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kurir.bench.load import PhaseResult, percentiles
from kurir.bench.procs import cpu_percent, cpu_total, rss_bytes

HOST = "bench.local"
_STREAM = (
    f"<?xml version='1.0'?><stream:stream to='{HOST}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
).encode()
_TOKENS = re.compile(rb"<body>(\d+) (\d+) [^<]*</body>|<iq [^>]*id='p(\d+)'[^>]*/?>")


class ExternalPhase(Protocol):
    """The counters a phase driver of another server keeps (Prosody's, Synapse's)."""

    sent: int
    accepted: int
    delivered: int
    accepted_in_window: int
    delivered_in_window: int
    errors: dict[str, int]
    latencies: array[int]
    max_lag_ns: int


@dataclass(frozen=True)
class Window:
    """CPU and memory of the server and of this generator over one measured window."""

    server_cpu_pct: float
    server_rss_mib: float
    generator_cpu_pct: float
    load_avg_1m: float


async def measure_window(server_pid: int, end_ns: int) -> Window:
    """Samples the server's CPU and peak RSS, and this process's CPU, until ``end_ns``."""
    me = os.getpid()
    s0, g0 = cpu_total([server_pid]), cpu_total([me])
    peak = rss_bytes(server_pid)
    while time.monotonic_ns() < end_ns:
        await asyncio.sleep(0.25)
        peak = max(peak, rss_bytes(server_pid))
    s1, g1 = cpu_total([server_pid]), cpu_total([me])
    return Window(cpu_percent(s0, s1), peak / 2**20, cpu_percent(g0, g1), os.getloadavg()[0])


def external_result(
    server: str,
    *,
    devices: int,
    rate: float | None,
    duration: float,
    phase: ExternalPhase,
    window: Window,
    undelivered: int,
) -> PhaseResult:
    """Builds the common result row of one phase of another server."""
    return PhaseResult(
        server=server,
        devices=devices,
        target_rate=rate,
        window=1,
        duration_s=duration,
        sent=phase.sent,
        accepted=phase.accepted,
        delivered=phase.delivered,
        accepted_per_s=phase.accepted_in_window / duration,
        delivered_per_s=phase.delivered_in_window / duration,
        receipts=0,
        undelivered=undelivered,
        errors=dict(phase.errors),
        latency=percentiles(phase.latencies),
        server_cpu_pct=window.server_cpu_pct,
        server_rss_mib=window.server_rss_mib,
        generator_cpu_pct=window.generator_cpu_pct,
        generator_max_lag_ms=phase.max_lag_ns / 1e6,
        load_avg_1m=window.load_avg_1m,
    )


def prosody_binary() -> str | None:
    """The ``prosody`` executable, or None when it is not installed."""
    return shutil.which("prosody")


def prosody_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "prosody"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


@dataclass
class Prosody:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_prosody(directory: Path, port: int) -> Prosody:
    binary = prosody_binary()
    if binary is None:
        raise RuntimeError("prosody is not installed (apt-get install prosody)")
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "certs").mkdir(exist_ok=True)
    config = directory / "prosody.cfg.lua"
    config.write_text(f"""
run_as_root = true
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
certificates = "{directory}/certs"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "register"; "ping"; }}
modules_disabled = {{ "s2s"; "offline"; "tls"; }}
allow_registration = true
min_seconds_between_registrations = 0
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{}}
limits = {{ c2s = {{ rate = "1000mb/s"; burst = "100mb"; }}; }}
log = {{ error = "*console" }}
VirtualHost "{HOST}"
""")
    log = open(directory / "stdout.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [binary, "-F", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    import socket

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((directory / "stdout.log").read_text()[-2000:])
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Prosody(process, port)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("prosody did not listen within 30 s")


@dataclass
class _Phase:
    phase_id: int
    start_ns: int
    count_from_ns: int
    end_ns: int
    rate: float | None
    sent: int = 0
    accepted: int = 0
    accepted_in_window: int = 0
    delivered: int = 0
    delivered_in_window: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: array[int] = field(default_factory=lambda: array("q"))
    max_lag_ns: int = 0


class _User:
    def __init__(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.index = index
        self.reader = reader
        self.writer = writer
        self.pings = 0
        self.acked = asyncio.Event()
        self.buffer = b""


async def _until(user_reader: asyncio.StreamReader, pattern: bytes, buf: bytes = b"") -> bytes:
    while not re.search(pattern, buf):
        data = await user_reader.read(65536)
        if not data:
            raise ConnectionError(buf[-500:].decode(errors="replace"))
        buf += data
    return buf


async def _login(port: int, index: int) -> _User:
    name, password = f"bench{index}", f"pw{index}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_STREAM)
    await _until(reader, rb"</stream:features>")
    writer.write(
        f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{name}"
        f"</username><password>{password}</password></query></iq>".encode()
    )
    answer = await _until(reader, rb"id='reg'[^>]*>")
    if b"type='result'" not in answer:
        raise RuntimeError(f"registration refused: {answer[-300:]!r}")
    credentials = base64.b64encode(f"\0{name}\0{password}".encode()).decode()
    writer.write(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}"
        "</auth>".encode()
    )
    if b"<success" not in await _until(reader, rb"<success|<failure"):
        raise RuntimeError("login refused")
    writer.write(_STREAM)
    await _until(reader, rb"</stream:features>")
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await _until(reader, rb"id='b'")
    writer.write(b"<presence/>")
    return _User(index, reader, writer)


class ProsodyLoad:
    def __init__(self, users: list[_User], payload_bytes: int) -> None:
        self.users = users
        self.filler = "x" * max(payload_bytes - 30, 8)
        self.phase: _Phase | None = None
        self.readers = [asyncio.create_task(self._read(u)) for u in users]

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for user in self.users:
            user.writer.close()

    async def _read(self, user: _User) -> None:
        while True:
            data = await user.reader.read(262144)
            if not data:
                if self.phase is not None:
                    self.phase.errors["closed"] = self.phase.errors.get("closed", 0) + 1
                return
            now = time.monotonic_ns()
            buf = user.buffer + data
            end = 0
            phase = self.phase
            for match in _TOKENS.finditer(buf):
                end = match.end()
                if match.group(3) is not None:
                    user.acked.set()
                    if phase is not None:
                        phase.accepted += 1
                        if phase.count_from_ns <= now < phase.end_ns:
                            phase.accepted_in_window += 1
                    continue
                stamp, phase_id = int(match.group(1)), int(match.group(2))
                if phase is None or phase_id != phase.phase_id:
                    continue
                phase.delivered += 1
                if phase.count_from_ns <= now < phase.end_ns:
                    phase.delivered_in_window += 1
                if phase.count_from_ns <= stamp < phase.end_ns:
                    phase.latencies.append(now - stamp)
            user.buffer = buf[end:] if end else buf[-4096:]

    def send(self, user: _User, stamp: int) -> None:
        phase = self.phase
        if phase is None:
            return
        others = len(self.users) - 1
        target = random.randrange(others)
        if target >= user.index:
            target += 1
        user.pings += 1
        user.acked.clear()
        user.writer.write(
            f"<message to='bench{target}@{HOST}' type='chat'><body>{stamp} {phase.phase_id} "
            f"{self.filler}</body></message><iq type='get' id='p{user.pings}'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        phase.sent += 1

    async def run_phase(self, phase: _Phase) -> None:
        self.phase = phase
        await asyncio.sleep(max(0.0, (phase.start_ns - time.monotonic_ns()) / 1e9))
        if phase.rate is None:

            async def closed_loop(user: _User) -> None:
                while (now := time.monotonic_ns()) < phase.end_ns:
                    self.send(user, now)
                    await user.acked.wait()

            await asyncio.gather(*(closed_loop(u) for u in self.users))
            return
        interval = 1e9 / phase.rate
        total = int((phase.end_ns - phase.start_ns) / interval) + 1
        k = 0
        while k < total:
            now = time.monotonic_ns()
            due = min(total, int((now - phase.start_ns) / interval) + 1)
            while k < due:
                intended = phase.start_ns + int(k * interval)
                phase.max_lag_ns = max(phase.max_lag_ns, now - intended)
                self.send(random.choice(self.users), intended)
                k += 1
            await asyncio.sleep(0.001)


async def run_prosody_phases(
    server: Prosody,
    devices: int,
    rates: list[float | None],
    duration: float,
    warmup: float,
    payload: int,
    drain: float,
) -> list[PhaseResult]:
    users: list[_User] = []
    for start in range(0, devices, 20):
        users += await asyncio.gather(
            *(_login(server.port, i) for i in range(start, min(devices, start + 20)))
        )
    load = ProsodyLoad(users, payload)
    results: list[PhaseResult] = []
    try:
        await asyncio.sleep(0.5)
        for phase_id, rate in enumerate(rates, 1):
            start_ns = time.monotonic_ns() + 300_000_000
            count_from = start_ns + int(warmup * 1e9)
            phase = _Phase(phase_id, start_ns, count_from, count_from + int(duration * 1e9), rate)
            runner = asyncio.create_task(load.run_phase(phase))
            await asyncio.sleep((count_from - time.monotonic_ns()) / 1e9)
            window = await measure_window(server.pid, phase.end_ns)
            await runner
            deadline = time.monotonic() + drain
            while (phase.delivered < phase.sent or phase.accepted < phase.sent) and (  # noqa: ASYNC110
                time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)  # polling counters the reader tasks advance
            results.append(
                external_result(
                    "prosody",
                    devices=devices,
                    rate=rate,
                    duration=duration,
                    phase=phase,
                    window=window,
                    undelivered=max(0, phase.sent - phase.delivered),
                )
            )
    finally:
        await load.close()
    return results
