"""`kurir serve` as a real process: durability across SIGKILL, refusal of bad setups."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from kurir.bench.procs import family
from kurir.cli.main import SUBCOMMANDS, build_parser, main
from kurir.server.app import DB_FILE
from kurir.server.config import load_apps
from kurir.server.testing import spawn_server
from kurir.wire.frames import Result

from .helpers import Device, drain, message, recv_frame, register, send, send_frame


class _DefaultKeys:
    """The client keys of the built-in catalogue, which `kurir serve` uses by default."""

    def client_key(self, app_id: str) -> str:
        app = load_apps().get(app_id)
        assert app is not None
        return app.client_key


async def _two_accounts(base_url: str, first: str, second: str) -> tuple[Device, Device]:
    keys = _DefaultKeys()
    async with httpx.AsyncClient(base_url=base_url) as http:
        return (
            await register(http, keys, first, registration_id=3),
            await register(http, keys, second, registration_id=4),
        )


async def test_accepted_message_survives_sigkill(tmp_path: Path) -> None:
    async with spawn_server(tmp_path) as proc:
        alice, bob = await _two_accounts(proc.base_url, "messenger:1000423", "instagram:@bob")
        async with connect(proc.ws_url, additional_headers=alice.auth) as a:
            await drain(a)
            await send_frame(a, send(1, bob, b"k" * 16, message(1, 4, b"survives")))
            assert await recv_frame(a) == Result(1, True)
            proc.kill()
            await proc.process.wait()
    async with (
        spawn_server(tmp_path) as proc,
        connect(proc.ws_url, additional_headers=bob.auth) as b,
    ):
        envelopes, _ = await drain(b)
        assert [e.body for e in envelopes] == [b"survives"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
async def test_pin_cpus_runs_the_loop_and_the_writer_on_two_cpus(tmp_path: Path) -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    async with spawn_server(tmp_path, extra_args=("--pin-cpus",)) as proc:
        alice, bob = await _two_accounts(proc.base_url, "messenger:1000424", "instagram:@pin")
        async with connect(proc.ws_url, additional_headers=alice.auth) as a:
            await drain(a)
            await send_frame(a, send(1, bob, b"p" * 16, message(1, 4, b"pinned")))
            assert await recv_frame(a) == Result(1, True)
        server = proc.process.pid
        (writer,) = family([server])[1:]
        threads = os.listdir(f"/proc/{server}/task")
        assert {t: os.sched_getaffinity(int(t)) for t in threads} == {t: {first} for t in threads}
        assert os.sched_getaffinity(writer) == {second}


def test_pin_cpus_refuses_a_single_cpu(tmp_path: Path) -> None:
    only = min(os.sched_getaffinity(0))
    result = subprocess.run(
        [*_SERVE, "--pin-cpus", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, {only}),
    )
    assert result.returncode == 2
    assert "--pin-cpus needs two CPUs; this process may use 1" in result.stderr
    assert not (tmp_path / DB_FILE).exists()  # refused before anything was opened


def test_pin_cpus_refuses_postgresql(tmp_path: Path) -> None:
    result = _serve("--pin-cpus", "--database", "postgresql://localhost/none")
    assert result.returncode == 2
    assert "--pin-cpus is for the SQLite engine" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


_SERVE = (sys.executable, "-m", "kurir.cli.main", "serve", "--port", "0")


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_SERVE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    conn = sqlite3.connect(tmp_path / DB_FILE)
    with conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    conn.close()
    result = _serve("--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "database schema 999 is newer" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def test_refuses_a_data_dir_another_server_uses(tmp_path: Path) -> None:
    async with spawn_server(tmp_path):
        result = _serve("--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "is in use by another kurir process" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_refuses_a_bad_app_catalogue(tmp_path: Path) -> None:
    apps = tmp_path / "apps.toml"
    apps.write_text('[[apps]]\nid = "Bad"\n', encoding="utf-8")
    result = _serve("--data-dir", str(tmp_path), "--apps", str(apps))
    assert result.returncode == 2
    assert "apps[0]" in result.stderr


def test_cli_registers_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert ("serve", "kurir.cli.serve") in SUBCOMMANDS
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    assert "--data-dir" in capsys.readouterr().out
    args = build_parser().parse_args(["serve", "--port", "0"])
    assert (args.port, args.host, str(args.data_dir)) == (0, "127.0.0.1", "data")
