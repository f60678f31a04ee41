"""SQLite-only behaviour: durability across reopen, migrations, group commit isolation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from kurir.server.storage.errors import SchemaTooNew
from kurir.server.storage.records import NewDevice, OutgoingEnvelope
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.storage.sqlite_db import Database, load_migrations
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address

A_ID = AccountId(UUID(int=1))


async def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    engine = SqliteEngine.open(path)
    s = engine.storage
    await s.accounts.register(
        Address("messenger", "1"), new_account_id=A_ID, device=NewDevice(None, 1, b"s", b"h"), now=1
    )
    env = OutgoingEnvelope(A_ID, DeviceId(1), b"m" * 16, 1, None, None, None, b"m" * 16, 1, b"body")
    await s.mailboxes.enqueue([env], now=2, expires_at=10**15, cap=10)
    await engine.close()
    engine = SqliteEngine.open(path)
    got = await engine.storage.mailboxes.fetch(A_ID, DeviceId(1), after_seq=0, limit=10, now=3)
    await engine.close()
    assert [e.body for e in got] == [b"body"]


async def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    await SqliteEngine.open(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO schema_version (version) VALUES (?)", (len(load_migrations()) + 1,)
        )
    conn.close()
    with pytest.raises(SchemaTooNew):
        SqliteEngine.open(path)


async def test_migrations_are_numbered_and_recorded(tmp_path: Path) -> None:
    migrations = load_migrations()
    assert [v for v, _ in migrations] == list(range(1, len(migrations) + 1))
    path = tmp_path / "k.db"
    await SqliteEngine.open(path).close()
    await SqliteEngine.open(path).close()  # reopening applies nothing twice
    conn = sqlite3.connect(path)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    conn.close()
    assert versions == [v for v, _ in migrations]


async def test_failing_operation_does_not_spoil_its_batch(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")

    def good(conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO accounts (account_id, app, identifier, created_at)"
            " VALUES ('a', 'x', 'y', 1)"
        )
        return 1

    def bad(conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO accounts (account_id, app, identifier, created_at)"
            " VALUES ('b', 'x', 'z', 1)"
        )
        raise ValueError("refused")

    try:
        results = await asyncio.gather(db.write(good), db.write(bad), return_exceptions=True)
        assert results[0] == 1
        assert isinstance(results[1], ValueError)
        rows = await db.read(lambda c: c.execute("SELECT account_id FROM accounts").fetchall())
        assert rows == [("a",)]
    finally:
        await db.close()


async def test_upgrades_a_schema_1_database(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    (_, first), *_ = load_migrations()
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        f"{first}\nINSERT INTO schema_version (version) VALUES (1);"
    )
    conn.execute(
        "INSERT INTO accounts (account_id, app, identifier, created_at)"
        " VALUES (?, 'messenger', '5', 1)",
        (str(A_ID),),
    )
    conn.execute(
        "INSERT INTO devices (account_id, device_id, registration_id, salt, password_hash,"
        " created_at) VALUES (?, 1, 1, x'00', x'00', 1)",
        (str(A_ID),),
    )
    conn.commit()
    conn.close()
    engine = SqliteEngine.open(path)
    try:
        device_id = await engine.storage.accounts.add_device(
            A_ID, NewDevice(None, 2, b"s", b"h"), now=2, max_devices=5
        )
    finally:
        await engine.close()
    assert device_id == 2
