"""kurir against Matrix Synapse (and Prosody, XMPP) on the same workload, in one run.

One table and one plot of all of them. Prosody is included when Debian's ``prosody`` package is
installed (``bench/prosody_driver.py``; skip it with ``--no-xmpp``).

Owns: installing Synapse from PyPI into its own virtual environment (``bench/.synapse-venv``,
gitignored), generating its configuration (SQLite, loopback only, rate limits lifted, a
registration shared secret, presence off, logs at WARNING), registering users through the admin
API, and driving the workload through the client-server API: every user sends ~200-byte opaque
``m.room.encrypted`` events to a direct room it shares with one other user and receives through
a ``/sync`` long poll. kurir is measured first with :mod:`kurir.bench.load` (a separate
``kurir serve`` process, raw WebSocket devices), Synapse second, with the same number of
devices, the same payload size and the same offered rates.

The workload as each server sees it:

* kurir: device i sends to a random other device; the recipient acknowledges; the server makes a
  delivery receipt for the sender, which the sender acknowledges too (3 frames each way and 4
  durable commits per message, one of them the per-conversation counters of docs/metadata.md).
* Synapse: user i shares a direct room with user i+1 (a ring) and sends to one of its two rooms
  at random; the other member receives the event in ``/sync`` (the sender also sees its own
  event there, as every Matrix client does). No read receipts are sent.

Usage (from the repository root)::

    .venv/bin/python bench/synapse_compare.py --devices 100 --duration 10 \\
        --json bench/results/compare.json --plot docs/throughput-latency.png
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table

from kurir.bench.load import LoadOptions, PhaseResult, machine_info, run_load
from kurir.bench.plot import INSTALL_HINT, have_plotting, plot_results, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prosody_driver

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".synapse-venv"
SERVER_NAME = "bench.local"
SECRET = "kurir-bench-registration-secret"  # loopback-only throwaway server
UNLIMITED = {"per_second": 1_000_000, "burst_count": 1_000_000}
SYNC_FILTER = json.dumps(
    {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": 200},
            "state": {"lazy_load_members": True, "not_types": ["*"]},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    },
    separators=(",", ":"),
)


def synapse_python() -> Path:
    """The Synapse venv's interpreter; create the venv and install Synapse if needed."""
    python = VENV / "bin" / "python"
    if (
        python.exists()
        and subprocess.run(
            [python, "-c", "import synapse"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return python
    print("installing matrix-synapse from PyPI into bench/.synapse-venv ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "matrix-synapse"], check=True)
    return python


def synapse_version(python: Path) -> str:
    out = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('matrix-synapse'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@dataclass
class Synapse:
    """A running Synapse homeserver."""

    process: subprocess.Popen[bytes]
    base_url: str
    directory: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_synapse(python: Path, directory: Path) -> Synapse:
    """Generate a config in ``directory`` and start Synapse; wait until it answers."""
    config = directory / "homeserver.yaml"
    subprocess.run(
        [
            python,
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            SERVER_NAME,
            "--config-path",
            config,
            "--data-directory",
            directory,
            "--generate-config",
            "--report-stats=no",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log_config = directory / "log.json.yaml"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"f": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "f"}},
                "root": {"level": "WARNING", "handlers": ["console"]},
                "disable_existing_loggers": False,
            }
        )
    )
    overrides = {
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "log_config": str(log_config),
        "registration_shared_secret": SECRET,
        "enable_registration": False,
        "bcrypt_rounds": 4,  # registration speed only; not part of the measured workload
        "presence": {"enabled": False},
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "rc_message": UNLIMITED,
        "rc_registration": UNLIMITED,
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_joins_per_room": UNLIMITED,
        "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
        "rc_room_creation": UNLIMITED,
        "rc_presence": {"per_user": UNLIMITED},
        "rc_key_requests": UNLIMITED,
    }
    # YAML is a superset of JSON; later config files override top-level keys
    (directory / "overrides.yaml").write_text(json.dumps(overrides, indent=1))
    log = open(directory / "stdout.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [python, "-m", "synapse.app.homeserver", "-c", config, "-c", directory / "overrides.yaml"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((directory / "stdout.log").read_text()[-3000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/_matrix/client/versions", timeout=1).status_code == 200:
                return Synapse(process, base_url, directory)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("Synapse did not start within 120 s")


@dataclass
class User:
    index: int
    user_id: str
    token: str
    rooms: list[str] = field(default_factory=list)
    since: str = ""


async def register_user(http: httpx.AsyncClient, index: int) -> User:
    """Register through the shared-secret admin API (synapse/_scripts/register_new_matrix_user)."""
    nonce = (await http.get("/_synapse/admin/v1/register")).json()["nonce"]
    name, password = f"bench{index}", f"password-{index}-{os.urandom(6).hex()}"
    mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\x00{name}\x00{password}\x00notadmin".encode())
    answer = await http.post(
        "/_synapse/admin/v1/register",
        json={
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": False,
            "mac": mac.hexdigest(),
        },
    )
    answer.raise_for_status()
    body = answer.json()
    return User(index, body["user_id"], body["access_token"])


async def setup_users(base_url: str, count: int, console: Console) -> list[User]:
    """Register ``count`` users; make a direct room for every neighbour pair of the ring."""
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:

        async def reg(i: int) -> User:
            async with limit:
                return await register_user(http, i)

        users = list(await asyncio.gather(*(reg(i) for i in range(count))))
        console.log(f"synapse: {count} users registered")

        async def pair(a: User, b: User) -> None:
            async with limit:
                answer = await http.post(
                    "/_matrix/client/v3/createRoom",
                    json={
                        "preset": "trusted_private_chat",
                        "is_direct": True,
                        "invite": [b.user_id],
                    },
                    headers={"Authorization": f"Bearer {a.token}"},
                )
                answer.raise_for_status()
                room = answer.json()["room_id"]
                joined = await http.post(
                    f"/_matrix/client/v3/join/{quote(room)}",
                    json={},
                    headers={"Authorization": f"Bearer {b.token}"},
                )
                joined.raise_for_status()
                a.rooms.append(room)
                b.rooms.append(room)

        pairs = [(users[i], users[(i + 1) % count]) for i in range(count if count > 2 else 1)]
        await asyncio.gather(*(pair(a, b) for a, b in pairs))
        console.log(f"synapse: {len(pairs)} direct rooms created")

        async def first_sync(u: User) -> None:
            async with limit:
                answer = await http.get(
                    "/_matrix/client/v3/sync",
                    params={"filter": SYNC_FILTER, "timeout": 0},
                    headers={"Authorization": f"Bearer {u.token}"},
                )
                answer.raise_for_status()
                u.since = answer.json()["next_batch"]

        await asyncio.gather(*(first_sync(u) for u in users))
    return users


@dataclass
class MatrixPhase:
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

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class MatrixLoad:
    """The Matrix workload: a send path and a /sync loop per user, in one process."""

    def __init__(self, base_url: str, users: list[User], payload_bytes: int) -> None:
        self.users = users
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(
                max_connections=4 * len(users) + 10, max_keepalive_connections=4 * len(users) + 10
            ),
        )
        # ~200 bytes of opaque content, like kurir's payload (base64 of random bytes)
        self.cipher = base64.b64encode(os.urandom(max(payload_bytes - 60, 16) * 3 // 4)).decode()
        self.phase: MatrixPhase | None = None
        self.txn = 0
        self.sync_tasks = [asyncio.create_task(self._sync_loop(u)) for u in users]

    async def close(self) -> None:
        for task in self.sync_tasks:
            task.cancel()
        await asyncio.gather(*self.sync_tasks, return_exceptions=True)
        await self.http.aclose()

    async def _sync_loop(self, user: User) -> None:
        headers = {"Authorization": f"Bearer {user.token}"}
        while True:
            try:
                answer = await self.http.get(
                    "/_matrix/client/v3/sync",
                    params={"filter": SYNC_FILTER, "timeout": 30000, "since": user.since},
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                if self.phase is not None:
                    self.phase.error(f"sync_{type(exc).__name__}")
                await asyncio.sleep(0.1)
                continue
            now = time.monotonic_ns()
            if answer.status_code != 200:
                if self.phase is not None:
                    self.phase.error(f"sync_{answer.status_code}")
                await asyncio.sleep(0.1)
                continue
            body = answer.json()
            user.since = body["next_batch"]
            phase = self.phase
            for room in body.get("rooms", {}).get("join", {}).values():
                for event in room.get("timeline", {}).get("events", []):
                    if event.get("sender") == user.user_id:
                        continue
                    content = event.get("content", {})
                    stamp = content.get("bench_sent_ns")
                    if phase is None or content.get("bench_phase") != phase.phase_id:
                        continue
                    phase.delivered += 1
                    if phase.count_from_ns <= now < phase.end_ns:
                        phase.delivered_in_window += 1
                    if isinstance(stamp, int) and phase.count_from_ns <= stamp < phase.end_ns:
                        phase.latencies.append(now - stamp)

    async def send(self, user: User, stamp: int) -> None:
        phase = self.phase
        if phase is None:
            return
        self.txn += 1
        room = random.choice(user.rooms)
        content = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": self.cipher,
            "bench_phase": phase.phase_id,
            "bench_sent_ns": stamp,
        }
        phase.sent += 1
        try:
            answer = await self.http.put(
                f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.encrypted/t{self.txn}",
                json=content,
                headers={"Authorization": f"Bearer {user.token}"},
            )
        except httpx.HTTPError as exc:
            phase.error(type(exc).__name__)
            return
        if answer.status_code == 200:
            phase.accepted += 1
            if phase.count_from_ns <= time.monotonic_ns() < phase.end_ns:
                phase.accepted_in_window += 1
        else:
            phase.error(f"http_{answer.status_code}")

    async def run_phase(self, phase: MatrixPhase) -> None:
        self.phase = phase
        await asyncio.sleep(max(0.0, (phase.start_ns - time.monotonic_ns()) / 1e9))
        if phase.rate is None:

            async def closed_loop(user: User) -> None:
                while (now := time.monotonic_ns()) < phase.end_ns:
                    await self.send(user, now)

            await asyncio.gather(*(closed_loop(u) for u in self.users))
            return
        interval = 1e9 / phase.rate
        total = int((phase.end_ns - phase.start_ns) / interval) + 1
        pending: set[asyncio.Task[None]] = set()
        k = 0
        while k < total:
            now = time.monotonic_ns()
            due = min(total, int((now - phase.start_ns) / interval) + 1)
            while k < due:
                intended = phase.start_ns + int(k * interval)
                phase.max_lag_ns = max(phase.max_lag_ns, now - intended)
                task = asyncio.create_task(self.send(random.choice(self.users), intended))
                pending.add(task)
                task.add_done_callback(pending.discard)
                k += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*pending)


async def run_synapse_phases(
    synapse: Synapse,
    users: list[User],
    rates: list[float | None],
    duration: float,
    warmup: float,
    payload: int,
    drain: float,
    console: Console,
) -> list[PhaseResult]:
    load = MatrixLoad(synapse.base_url, users, payload)
    results: list[PhaseResult] = []
    try:
        await asyncio.sleep(1.0)  # let every /sync long poll reach the server
        for phase_id, rate in enumerate(rates, 1):
            start = time.monotonic_ns() + 300_000_000
            count_from = start + int(warmup * 1e9)
            phase = MatrixPhase(phase_id, start, count_from, count_from + int(duration * 1e9), rate)
            runner = asyncio.create_task(load.run_phase(phase))
            await asyncio.sleep((count_from - time.monotonic_ns()) / 1e9)
            window = await prosody_driver.measure_window(synapse.pid, phase.end_ns)
            await runner
            deadline = time.monotonic() + drain
            while phase.delivered < phase.accepted and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polling a counter the /sync loops advance
            result = prosody_driver.external_result(
                "synapse",
                devices=len(users),
                rate=rate,
                duration=duration,
                phase=phase,
                window=window,
                undelivered=max(0, phase.accepted - phase.delivered),
            )
            console.log(
                f"synapse {'max' if rate is None else rate}: "
                f"{result.delivered_per_s:,.1f} delivered/s"
            )
            results.append(result)
    finally:
        await load.close()
    return results


def table(results: list[PhaseResult]) -> Table:
    t = Table(title="kurir, Synapse and Prosody: same workload, same run")
    for name in (
        "server",
        "offered/s",
        "accepted/s",
        "delivered/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "server CPU %",
        "server RSS MiB",
        "generator CPU %",
        "load avg",
    ):
        t.add_column(name, justify="right")
    for r in results:
        lat = r.latency
        t.add_row(
            r.server,
            "max" if r.target_rate is None else f"{r.target_rate:,.0f}",
            f"{r.accepted_per_s:,.1f}",
            f"{r.delivered_per_s:,.1f}",
            *(
                ("-",) * 4
                if lat is None
                else (
                    f"{lat.p50_ms:.1f}",
                    f"{lat.p99_ms:.1f}",
                    f"{lat.p999_ms:.1f}",
                    f"{lat.max_ms:.1f}",
                )
            ),
            str(sum(r.errors.values()) + r.undelivered),
            f"{r.server_cpu_pct:.0f}",
            f"{r.server_rss_mib:.0f}",
            f"{r.generator_cpu_pct:.0f}",
            f"{r.load_avg_1m:.1f}",
        )
    return t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--payload", type=int, default=200)
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="offered msgs/s for both servers (repeat); 'max' always runs last",
    )
    parser.add_argument(
        "--kurir-rate",
        type=float,
        action="append",
        help="extra offered rates for kurir only (its curve goes further)",
    )
    parser.add_argument("--drain", type=float, default=15.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--skip-kurir", action="store_true")
    parser.add_argument("--skip-synapse", action="store_true")
    parser.add_argument(
        "--no-xmpp", action="store_true", help="skip Prosody even when it is installed"
    )
    args = parser.parse_args()
    if args.plot is not None and not have_plotting():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    console = Console(stderr=True, width=160)
    common: list[float | None] = [*(args.rate or [50.0]), None]
    kurir_rates: list[float | None] = sorted(
        {*(r for r in common if r is not None), *(args.kurir_rate or [250.0, 500.0, 1000.0])}
    )
    kurir_rates.append(None)
    python = synapse_python()
    document: dict[str, Any] = {
        "command": [Path(sys.executable).name, *sys.argv],
        "machine": machine_info(),
        "synapse_version": synapse_version(python),
        "devices": args.devices,
        "payload_bytes": args.payload,
    }
    results: list[PhaseResult] = []
    if not args.skip_kurir:
        console.log(f"kurir: {args.devices} devices, rates {kurir_rates}")
        results += run_load(
            LoadOptions(
                devices=args.devices,
                rates=tuple(kurir_rates),
                duration_s=args.duration,
                warmup_s=args.warmup,
                payload_bytes=args.payload,
            ),
            on_phase=lambda r: console.log(
                f"kurir {'max' if r.target_rate is None else r.target_rate}: "
                f"{r.delivered_per_s:,.0f} delivered/s"
            ),
        )
    if not args.no_xmpp and prosody_driver.prosody_binary() is not None:
        xmpp_dir = Path(tempfile.mkdtemp(prefix="prosody-bench-"))
        prosody = prosody_driver.start_prosody(xmpp_dir, _free_port())
        try:
            document["prosody_version"] = prosody_driver.prosody_version()
            console.log(f"prosody {document['prosody_version']} on port {prosody.port}")
            results += asyncio.run(
                prosody_driver.run_prosody_phases(
                    prosody,
                    args.devices,
                    common,
                    args.duration,
                    args.warmup,
                    args.payload,
                    args.drain,
                )
            )
            for r in results:
                if r.server == "prosody":
                    console.log(f"prosody {r.target_rate}: {r.delivered_per_s:,.1f} delivered/s")
        finally:
            prosody.stop()
            shutil.rmtree(xmpp_dir, ignore_errors=True)
    elif not args.no_xmpp:
        console.log("prosody is not installed (apt-get install prosody): XMPP skipped")
    if args.skip_synapse:
        return _finish(args, document, results, console)
    directory = Path(
        tempfile.mkdtemp(prefix="synapse-bench-", dir=os.environ.get("KURIR_BENCH_TMP"))
    )
    synapse = start_synapse(python, directory)
    try:
        console.log(f"synapse {document['synapse_version']} on {synapse.base_url}")
        users = asyncio.run(setup_users(synapse.base_url, args.devices, console))
        results += asyncio.run(
            run_synapse_phases(
                synapse,
                users,
                common,
                args.duration,
                args.warmup,
                args.payload,
                args.drain,
                console,
            )
        )
    finally:
        synapse.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return _finish(args, document, results, console)


def _finish(
    args: argparse.Namespace,
    document: dict[str, Any],
    results: list[PhaseResult],
    console: Console,
) -> int:
    document["phases"] = results
    console.print(table(results))
    best = {
        s: max((r.delivered_per_s for r in results if r.server == s), default=0.0)
        for s in ("kurir", "synapse", "prosody")
    }
    if best["synapse"] > 0:
        ratio = best["kurir"] / best["synapse"]
        document["kurir_over_synapse_max_delivered"] = ratio
        console.print(f"kurir / synapse, best delivered msgs/s: {ratio:.1f}x")
    if best["prosody"] > 0:
        ratio = best["kurir"] / best["prosody"]
        document["kurir_over_prosody_max_delivered"] = ratio
        console.print(f"kurir / prosody, best delivered msgs/s: {ratio:.2f}x")
    if args.json is not None:
        write_json(args.json, document)
        console.print(f"results: {args.json}")
    if args.plot is not None:
        plot_results(
            args.plot,
            results,
            title=f"kurir, Synapse, Prosody: {args.devices} devices, "
            f"{args.payload}-byte payloads, same machine and run",
        )
        console.print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
