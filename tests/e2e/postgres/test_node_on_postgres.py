"""A `kurir serve` node on PostgreSQL: where it stores, surviving SIGKILL, and migrations."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from e2e.harness import (
    BUDI,
    GUARD_SECONDS,
    MEGA,
    RINA,
    MakeClient,
    ServerProcess,
    collect,
    run_server,
)
from e2e.test_no_plaintext_on_server import _leaks
from kurir.client.content import Text
from kurir.server.storage.postgres_db import load_migrations


async def kurir(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kurir.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, KURIR_DATABASE=""),
    )
    async with asyncio.timeout(GUARD_SECONDS):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _count(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))
    finally:
        await conn.close()


async def test_the_node_keeps_its_state_in_postgresql(
    make_client: MakeClient, server: ServerProcess, database_url: str
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA, connect=False)
    await budi.send_text(RINA, "tersimpan di postgres")
    assert await _count(database_url, "accounts") == 2
    assert await _count(database_url, "envelopes") == 1  # queued for Rina's offline device
    assert not (server.data_dir / "kurir.db").exists()
    await rina.connect()
    await rina.wait_drained()
    got, _ = await collect(rina, messages=1)
    assert [e.body.text for e in got if isinstance(e.body, Text)] == ["tersimpan di postgres"]
    await server.stop()
    log = server.log_path.read_text()
    assert "storage: postgresql" in log
    assert "applied storage migration 1" in log  # migrated on open, as SQLite does, and said so
    assert "postgresql://" not in log  # the database URL is never logged


async def _dump(url: str) -> dict[str, bytes]:
    """Every row of every kurir table, in COPY's text and binary formats."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        dumped: dict[str, bytes] = {}
        for row in tables:
            for fmt in ("text", "binary"):
                out = io.BytesIO()
                await conn.copy_from_table(row["tablename"], output=out, format=fmt)
                dumped[f"{row['tablename']} ({fmt})"] = out.getvalue()
    finally:
        await conn.close()
    assert {"accounts (text)", "envelopes (binary)"} <= set(dumped)
    return dumped


async def test_no_plaintext_in_postgresql_or_logs(
    make_client: MakeClient, server: ServerProcess, database_url: str
) -> None:
    clients = {a: await make_client(a) for a in (BUDI, MEGA, RINA)}
    texts: list[str] = []
    for sender, recipient in itertools.permutations(clients, 2):
        text = f"rahasia {secrets.token_hex(12)} dari {sender} untuk {recipient}"
        texts.append(text)
        await clients[sender].send_text(recipient, text)
    for client in clients.values():
        await collect(client, messages=2, receipts=2)
    await clients[RINA].close()
    waiting = [f"titipan {secrets.token_hex(12)} nomor {i}" for i in range(3)]
    texts += waiting
    for text in waiting:
        await clients[BUDI].send_text(RINA, text)
    while_queued = await _dump(database_url)
    assert len(while_queued["envelopes (binary)"]) > 3 * 100  # the three are in there
    rina = await make_client(RINA)
    await collect(rina, messages=3)
    await server.stop()
    after = await _dump(database_url)
    assert _leaks(while_queued, texts) == []
    assert _leaks(after, texts) == []
    assert _leaks({"server log": server.log_path.read_bytes()}, texts) == []
    # positive control: the same search finds what the server does store in the clear
    assert _leaks(after, [RINA.partition(":")[2]]) != []  # the handle, "@rina"


async def test_messages_accepted_before_sigkill_are_delivered_after_restart(
    make_client: MakeClient, server: ServerProcess, database_url: str, tmp_path: Path
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA, connect=False)
    texts = [f"sebelum mati {i}" for i in range(5)]
    for text in texts:
        await budi.send_text(RINA, text)  # returns once PostgreSQL committed it
    await budi.disconnect()
    await server.kill()

    port = urlsplit(server.url).port
    assert port is not None
    async with run_server(
        server.data_dir, tmp_path / "server-2.log", port=port, database=database_url
    ):
        await rina.connect()
        await rina.wait_drained()
        got, _ = await collect(rina, messages=5)
        assert [e.body.text for e in got if isinstance(e.body, Text)] == texts
        await budi.connect()
        await budi.wait_drained()
        _, receipts = await collect(budi, receipts=5)
        assert len({r.message_id for r in receipts}) == 5
        assert rina.pending_events() == []


async def test_migrate_then_serve_refuses_a_newer_schema(database_url: str, tmp_path: Path) -> None:
    known = len(load_migrations())
    code, out, _ = await kurir("migrate", "--database", database_url, "--status")
    assert (code, out.strip()) == (0, f"postgresql: schema 0 of {known} ({known} pending)")
    code, out, _ = await kurir("migrate", "--database", database_url)
    assert code == 0
    assert f"schema {known} of {known}" in out
    code, out, _ = await kurir("migrate", "--database", database_url)
    assert (code, out.strip()) == (0, f"postgresql: schema {known} of {known}, nothing to apply")

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", known + 1)
    finally:
        await conn.close()
    code, _, err = await kurir("migrate", "--database", database_url)
    assert code == 2
    assert f"database schema {known + 1} is newer than this kurir ({known})" in err
    code, _, err = await kurir(
        "serve", "--database", database_url, "--data-dir", str(tmp_path), "--port", "0"
    )
    assert code == 2
    assert f"database schema {known + 1} is newer than this kurir ({known})" in err


async def test_serve_reports_an_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql://kurir:s3cret@127.0.0.1:1/kurir"
    code, _, err = await kurir("serve", "--database", url, "--data-dir", str(tmp_path))
    assert code == 2
    assert "cannot connect to PostgreSQL" in err
    assert "s3cret" not in err
