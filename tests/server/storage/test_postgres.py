"""PostgreSQL-only behaviour: migrations, schema refusal, group commit, several engines (nodes)
on one database, durability across reopen, and the mailbox model on PostgreSQL.

Each test gets a fresh schema in the session's scratch database (conftest); without a
reachable server they skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from hypothesis.stateful import run_state_machine_as_test

from kurir.server.storage import postgres_db, sqlite_db
from kurir.server.storage.errors import MailboxFull, SchemaTooNew, StorageError, UnknownDevice
from kurir.server.storage.pg_testing import fresh_schema
from kurir.server.storage.postgres import PostgresEngine
from kurir.server.storage.protocols import StorageEngine
from kurir.server.storage.records import NewDevice, OutgoingEnvelope
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address
from server.storage.test_mailbox_model import _SETTINGS, MailboxModel

A_ID = AccountId(UUID(int=1))
B_ID = AccountId(UUID(int=2))
D1 = DeviceId(1)
FAR = 10**15


@pytest.fixture
async def dsn(postgres_database: str) -> str:
    """A DSN whose connections use a fresh, empty schema."""
    return await fresh_schema(postgres_database)


@pytest.fixture
async def engine(dsn: str) -> AsyncIterator[PostgresEngine]:
    """An open engine on the fresh schema, with accounts A and B registered."""
    opened = await PostgresEngine.open(dsn)
    for address, account in ((Address("messenger", "1"), A_ID), (Address("messenger", "2"), B_ID)):
        await opened.storage.accounts.register(
            address, new_account_id=account, device=NewDevice(None, 1, b"s", b"h"), now=1
        )
    try:
        yield opened
    finally:
        await opened.close()


def _env(to: AccountId, key: bytes, *, device: DeviceId = D1) -> OutgoingEnvelope:
    return OutgoingEnvelope(to, device, key, 1, A_ID, D1, "messenger:1", key, 5, b"ct" + key)


async def _versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    finally:
        await conn.close()
    return [int(r["version"]) for r in rows]


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_migrations_mirror_the_sqlite_numbers() -> None:
    pg = [v for v, _ in postgres_db.load_migrations()]
    assert pg == list(range(1, len(pg) + 1))
    assert pg == [v for v, _ in sqlite_db.load_migrations()]


async def test_migrations_are_recorded_once(dsn: str) -> None:
    await (await PostgresEngine.open(dsn)).close()
    await (await PostgresEngine.open(dsn)).close()  # reopening applies nothing twice
    assert await _versions(dsn) == [v for v, _ in postgres_db.load_migrations()]


async def test_nodes_starting_together_migrate_once(dsn: str) -> None:
    engines = await asyncio.gather(*(PostgresEngine.open(dsn) for _ in range(4)))
    for opened in engines:
        await opened.close()
    assert await _versions(dsn) == [v for v, _ in postgres_db.load_migrations()]


async def test_refuses_a_newer_schema(dsn: str) -> None:
    await (await PostgresEngine.open(dsn)).close()
    newer = len(postgres_db.load_migrations()) + 1
    await _execute(dsn, f"INSERT INTO schema_version (version) VALUES ({newer})")
    with pytest.raises(SchemaTooNew, match=f"schema {newer} is newer"):
        await PostgresEngine.open(dsn)
    with pytest.raises(SchemaTooNew):
        await PostgresEngine.open(dsn, migrate=False)


async def test_without_migrate_a_schema_behind_is_refused_untouched(dsn: str) -> None:
    with pytest.raises(StorageError, match="kurir migrate"):
        await PostgresEngine.open(dsn, migrate=False)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('schema_version')") is None
    finally:
        await conn.close()


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as info:
        await PostgresEngine.open("postgresql://kurir:s3cret-pw@127.0.0.1:1/none")
    assert "s3cret-pw" not in str(info.value)


async def test_upgrades_a_schema_1_database(dsn: str) -> None:
    (_, first), *_ = postgres_db.load_migrations()
    await _execute(
        dsn,
        "CREATE TABLE schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now());"
        f"{first}\nINSERT INTO schema_version (version) VALUES (1);"
        f"INSERT INTO accounts VALUES ('{A_ID}', 'messenger', '5', NULL, 1);"
        f"INSERT INTO account_addresses VALUES ('messenger', '5', '{A_ID}');"
        "INSERT INTO devices (account_id, device_id, registration_id, salt, password_hash,"
        f" created_at) VALUES ('{A_ID}', 1, 1, '\\x00', '\\x00', 1);",
    )
    opened = await PostgresEngine.open(dsn)
    try:
        device_id = await opened.storage.accounts.add_device(
            A_ID, NewDevice(None, 2, b"s", b"h"), now=2, max_devices=5
        )
    finally:
        await opened.close()
    assert device_id == 2


async def test_concurrent_enqueues_share_transactions(engine: PostgresEngine) -> None:
    mb = engine.storage.mailboxes
    before = engine.mailbox_batches
    woken = await asyncio.gather(
        *(
            mb.enqueue([_env(B_ID, i.to_bytes(16, "big"))], now=1, expires_at=FAR, cap=1000)
            for i in range(100)
        )
    )
    assert woken == [[DeviceRef(B_ID, D1)]] * 100
    assert engine.mailbox_batches - before < 100  # group commit: fewer transactions than calls
    got = await mb.fetch(B_ID, D1, after_seq=0, limit=500, now=2)
    assert [e.seq for e in got] == list(range(1, 101))
    assert [e.body for e in got] == [b"ct" + i.to_bytes(16, "big") for i in range(100)]


async def test_a_refused_call_does_not_disturb_its_batch(engine: PostgresEngine) -> None:
    mb = engine.storage.mailboxes
    await mb.enqueue([_env(A_ID, b"full-1" + bytes(10))], now=1, expires_at=FAR, cap=1)
    results = await asyncio.gather(
        mb.enqueue([_env(B_ID, b"ok-1" + bytes(12))], now=2, expires_at=FAR, cap=5),
        mb.enqueue([_env(B_ID, b"x" * 16, device=DeviceId(9))], now=2, expires_at=FAR, cap=5),
        mb.enqueue([_env(A_ID, b"full-2" + bytes(10))], now=2, expires_at=FAR, cap=1),
        mb.enqueue([_env(B_ID, b"ok-1" + bytes(12))], now=2, expires_at=FAR, cap=5),  # duplicate
        mb.enqueue([_env(B_ID, b"ok-2" + bytes(12))], now=2, expires_at=FAR, cap=5),
        return_exceptions=True,
    )
    assert results[0] == [DeviceRef(B_ID, D1)]
    assert isinstance(results[1], UnknownDevice)
    assert isinstance(results[2], MailboxFull)
    assert results[2].devices == [DeviceRef(A_ID, D1)]
    assert results[3] == []
    assert results[4] == [DeviceRef(B_ID, D1)]
    got = await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=3)
    assert [(e.seq, e.message_id[:4]) for e in got] == [(1, b"ok-1"), (2, b"ok-2")]
    assert len(await mb.fetch(A_ID, D1, after_seq=0, limit=10, now=3)) == 1


async def test_acks_and_enqueues_batched_together(engine: PostgresEngine) -> None:
    mb = engine.storage.mailboxes
    await mb.enqueue(
        [_env(B_ID, bytes([i]) * 16) for i in range(1, 4)], now=1, expires_at=FAR, cap=100
    )
    acked, *rest = await asyncio.gather(
        mb.acknowledge(B_ID, D1, [1, 2], now=2, expires_at=FAR, receipt_source_address="m:2"),
        *(
            mb.enqueue([_env(B_ID, bytes([i]) * 16)], now=2, expires_at=FAR, cap=100)
            for i in (1, 4)
        ),
    )
    assert acked == [DeviceRef(A_ID, D1)]  # both receipts go to A's device 1
    assert rest == [[], [DeviceRef(B_ID, D1)]]  # 1 was delivered: a duplicate
    left = await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=3)
    assert [e.seq for e in left] == [3, 4]
    receipts = await mb.fetch(A_ID, D1, after_seq=0, limit=10, now=3)
    assert [(r.type, r.message_id, r.source_address) for r in receipts] == [
        (5, bytes([1]) * 16, "m:2"),
        (5, bytes([2]) * 16, "m:2"),
    ]


async def test_two_nodes_on_one_database_keep_one_sequence(dsn: str) -> None:
    first = await PostgresEngine.open(dsn)
    second = await PostgresEngine.open(dsn)
    try:
        await first.storage.accounts.register(
            Address("messenger", "2"),
            new_account_id=B_ID,
            device=NewDevice(None, 1, b"s", b"h"),
            now=1,
        )
        calls = [
            node.storage.mailboxes.enqueue(
                [_env(B_ID, i.to_bytes(16, "big"))], now=1, expires_at=FAR, cap=1000
            )
            for i in range(120)
            for node in ((first, second)[i % 2],)
        ]
        await asyncio.gather(*calls)
        # the same message sent through both nodes is queued once
        again = await asyncio.gather(
            first.storage.mailboxes.enqueue(
                [_env(B_ID, b"z" * 16)], now=2, expires_at=FAR, cap=999
            ),
            second.storage.mailboxes.enqueue(
                [_env(B_ID, b"z" * 16)], now=2, expires_at=FAR, cap=999
            ),
        )
        assert sorted(map(len, again)) == [0, 1]
        got = await second.storage.mailboxes.fetch(B_ID, D1, after_seq=0, limit=500, now=3)
    finally:
        await first.close()
        await second.close()
    assert [e.seq for e in got] == list(range(1, 122))
    assert len({e.message_id for e in got}) == 121


async def test_state_survives_reopen(dsn: str) -> None:
    opened = await PostgresEngine.open(dsn)
    await opened.storage.accounts.register(
        Address("messenger", "1"), new_account_id=A_ID, device=NewDevice(None, 1, b"s", b"h"), now=1
    )
    await opened.storage.mailboxes.enqueue([_env(A_ID, b"m" * 16)], now=2, expires_at=FAR, cap=9)
    await opened.close()
    reopened = await PostgresEngine.open(dsn)
    try:
        got = await reopened.storage.mailboxes.fetch(A_ID, D1, after_seq=0, limit=10, now=3)
    finally:
        await reopened.close()
    assert [e.body for e in got] == [b"ct" + b"m" * 16]


async def test_closed_engine_refuses_new_calls(engine: PostgresEngine) -> None:
    await engine.close()
    with pytest.raises(StorageError):
        await engine.storage.mailboxes.enqueue(
            [_env(B_ID, b"q" * 16)], now=1, expires_at=FAR, cap=9
        )


def test_mailbox_model_on_postgres(postgres_database: str) -> None:
    class PostgresMailbox(MailboxModel):
        def make_engine(self, directory: Path) -> StorageEngine:
            raise NotImplementedError  # opened asynchronously below

        async def _open(self) -> StorageEngine:
            engine = await PostgresEngine.open(await fresh_schema(postgres_database))
            await engine.storage.accounts.register(
                Address("messenger", "1"),
                new_account_id=AccountId(UUID(int=1)),
                device=NewDevice(None, 1, b"s", b"h"),
                now=0,
            )
            return engine

    run_state_machine_as_test(PostgresMailbox, settings=_SETTINGS)


async def test_database_failures_are_storage_errors_without_the_database_text(dsn: str) -> None:
    db = await postgres_db.PgDatabase.open(dsn)

    async def bad(conn: postgres_db.Conn) -> None:
        await conn.execute("SELECT 'user secret +628123'::integer")

    try:
        with pytest.raises(StorageError) as info:
            await db.transaction(bad)
        assert str(info.value) == "database failure: InvalidTextRepresentationError"
        assert info.value.__cause__ is None
        with pytest.raises(StorageError):
            await db.read(bad)
        assert await db.read(lambda conn: conn.fetchval("SELECT 1")) == 1  # still usable
    finally:
        await db.close()


async def test_concurrent_registrations_of_one_address_on_two_nodes_agree(dsn: str) -> None:
    first = await PostgresEngine.open(dsn)
    second = await PostgresEngine.open(dsn)
    address = Address("whatsapp", "+6281234567890")
    try:
        ids = await asyncio.gather(
            *(
                node.storage.accounts.register(
                    address,
                    new_account_id=AccountId(UUID(int=100 + i)),
                    device=NewDevice(None, i + 1, b"s", b"h"),
                    now=1,
                )
                for i, node in enumerate([first, second] * 4)
            )
        )
        found = await second.storage.accounts.lookup([address])
    finally:
        await first.close()
        await second.close()
    assert len(set(ids)) == 1  # one account; the later registrations re-registered it
    assert found == {address: (ids[0], [D1])}


async def test_both_engines_have_the_same_tables_and_columns(dsn: str, tmp_path: Path) -> None:
    from kurir.server.storage.sqlite import SqliteEngine

    await SqliteEngine.open(tmp_path / "k.db").close()
    lite = sqlite3.connect(tmp_path / "k.db")
    try:
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        sqlite_schema = {
            t: sorted(r[1] for r in lite.execute(f"PRAGMA table_info({t})")) for t in tables
        }
    finally:
        lite.close()
    await (await PostgresEngine.open(dsn)).close()
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        )
    finally:
        await conn.close()
    pg_schema: dict[str, list[str]] = {}
    for row in rows:
        pg_schema.setdefault(row["table_name"], []).append(row["column_name"])
    pg_schema = {t: sorted(c) for t, c in pg_schema.items()}
    # PostgreSQL only: the address map keyed by address (sharding), migration bookkeeping
    assert pg_schema.pop("account_addresses") == ["account_id", "app", "identifier"]
    assert pg_schema.pop("schema_version") == ["applied_at", "version"]
    assert sqlite_schema.pop("schema_version") == ["version"]
    # SQLite only: where the sweep of delivered records goes on (schema 7, no expiry index)
    assert sqlite_schema.pop("delivered_sweep") == ["id", "next_slice", "swept_until"]
    # SQLite keeps each device's seq counter in a narrow table of its own (schema 8)
    assert sqlite_schema.pop("mailbox_seq") == ["account_id", "device_id", "last_seq"]
    pg_schema["devices"].remove("last_seq")
    assert pg_schema == sqlite_schema
