"""SQLite-only behaviour: durability across reopen, migrations, group commit isolation, reads."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from kurir.server.storage.errors import DatabaseInUse, SchemaTooNew, StorageError
from kurir.server.storage.metadata_protocols import PolicyViewReader
from kurir.server.storage.metadata_records import ConversationState
from kurir.server.storage.metadata_sqlite import record_send_in
from kurir.server.storage.records import NewDevice, OutgoingEnvelope, SendCount
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.storage.sqlite_db import (
    ON_LOOP_VM_STEPS,
    Database,
    check_not_in_use,
    load_migrations,
)
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address
from server.storage.writer_ops import (
    accounts,
    hold,
    insert,
    insert_again,
    insert_then_fail,
    rename_a,
)

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


async def test_one_process_owns_the_file_until_it_closes(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    first = Database.open(path)
    with pytest.raises(DatabaseInUse, match="in use by another kurir process"):
        Database.open(path)  # another open of the file (another process, or this one)
    with pytest.raises(DatabaseInUse):
        check_not_in_use(path)
    await first.close()
    check_not_in_use(path)
    await Database.open(path).close()


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
    try:
        results = await asyncio.gather(
            db.write(insert, "a"), db.write(insert_then_fail, "b"), return_exceptions=True
        )
        assert results[0] == "a"
        assert isinstance(results[1], ValueError)
        assert await db.read(accounts) == ["a"]
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


Write = tuple[Callable[[sqlite3.Connection, str], str], str]


async def _one_batch(db: Database, gate: Path, writes: list[Write]) -> list[object]:
    """Run ``writes`` through :meth:`Database.write` as ONE group-commit batch: a first
    operation holds the writer process (:func:`hold`, on the FIFO ``gate``) until all of them
    have been sent to it."""
    os.mkfifo(gate)
    gate_task = asyncio.create_task(db.write(hold, str(gate)))
    release = await asyncio.to_thread(open, gate, "wb")  # returns once the writer holds
    tasks = [asyncio.create_task(db.write(fn, arg)) for fn, arg in writes]
    await asyncio.sleep(0)  # every task has queued its operation
    await asyncio.sleep(0)  # and they went to the writer as one message
    release.close()
    assert await gate_task == "held"
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_a_failing_operation_is_isolated_within_its_batch(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        results = await _one_batch(
            db,
            tmp_path / "gate",
            [
                (insert, "a"),
                (insert_then_fail, "b"),
                (insert_again, "b"),
                (rename_a, ""),
                (insert, "a"),
            ],
        )
        assert results[0] == "a"
        assert isinstance(results[1], ValueError)
        assert results[2] == "b-again"
        assert results[3] == "updated 1"  # saw the first operation's row
        assert isinstance(results[4], sqlite3.IntegrityError)  # a duplicate of the first
        assert await db.read(accounts) == ["a", "b"]
        identifiers = await db.read(
            lambda c: c.execute("SELECT identifier FROM accounts ORDER BY account_id").fetchall()
        )
        assert identifiers == [("A",), ("b",)]
    finally:
        await db.close()


async def test_a_batch_without_failures_commits_every_operation(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        names = [f"n{i:02d}" for i in range(20)]
        assert await _one_batch(db, tmp_path / "gate", [(insert, n) for n in names]) == names
        assert await db.read(accounts) == names
    finally:
        await db.close()


async def test_a_read_sees_every_write_awaited_before_it(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        for i in range(50):
            await db.write(insert, f"r{i:02d}")
            assert len(await db.read(accounts)) == i + 1
            assert len(await db.read_bulk(accounts)) == i + 1
    finally:
        await db.close()


async def test_short_reads_run_on_the_loop_and_long_ones_move_off_it(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    ran_on: list[str] = []

    def count(limit: int) -> Callable[[sqlite3.Connection], int]:
        def op(conn: sqlite3.Connection) -> int:
            ran_on.append(threading.current_thread().name)
            row = conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " SELECT COUNT(*) FROM n",
                (limit,),
            ).fetchone()
            return int(row[0])

        return op

    here = threading.current_thread().name
    try:
        assert await db.read(count(10)) == 10
        assert ran_on == [here]
        ran_on.clear()
        # far beyond ON_LOOP_VM_STEPS: interrupted on the loop, run again in full on the thread
        big = ON_LOOP_VM_STEPS * 10
        assert await db.read(count(big)) == big
        assert len(ran_on) == 2
        assert ran_on[0] == here
        assert ran_on[1] != here
        ran_on.clear()
        assert await db.read_bulk(count(10)) == 10
        assert len(ran_on) == 1
        assert ran_on[0] != here
        ran_on.clear()
        assert await db.read(count(10)) == 10  # the reader is usable again after an interrupt
        assert ran_on == [here]
    finally:
        await db.close()


async def test_closed_database_refuses_reads_and_writes(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    await db.close()
    with pytest.raises(StorageError):
        await db.read(accounts)
    with pytest.raises(StorageError):
        await db.read_bulk(accounts)
    with pytest.raises(StorageError):
        await db.write(insert, "x")


async def test_cached_send_path_reads_follow_every_change(tmp_path: Path) -> None:
    # the embedded engine caches device lists and policy views; each change must show in
    # the next read after it returned (a block stops the very next send)
    engine = SqliteEngine.open(tmp_path / "k.db")
    s = engine.storage
    metadata = s.metadata
    assert isinstance(metadata, PolicyViewReader)
    assert s.metadata is not None
    b_id = AccountId(UUID(int=2))
    device = NewDevice(None, 1, b"s", b"h")
    await s.accounts.register(Address("messenger", "1"), new_account_id=A_ID, device=device, now=1)
    await s.accounts.register(Address("messenger", "2"), new_account_id=b_id, device=device, now=1)
    keys = ["messenger:1"]
    try:
        for _ in range(2):  # the second round is served from the cache
            assert [d.device_id for d in await s.accounts.list_devices(b_id)] == [1]
            view = await metadata.policy_view(b_id, A_ID, keys)
            assert (view.blocked, view.state, view.is_contact) == (False, None, False)
        second = await s.accounts.add_device(b_id, device, now=2, max_devices=5)
        assert [d.device_id for d in await s.accounts.list_devices(b_id)] == [1, second]
        await s.metadata.block(b_id, A_ID, now=3)
        assert (await metadata.policy_view(b_id, A_ID, keys)).blocked
        await s.metadata.unblock(b_id, A_ID)
        await s.metadata.replace_contacts(b_id, keys, now=4)
        view = await metadata.policy_view(b_id, A_ID, keys)
        assert (view.blocked, view.is_contact) == (False, True)
        # the counts written with an enqueue create b's side of the conversation
        env = OutgoingEnvelope(
            b_id, DeviceId(1), b"m" * 16, 1, A_ID, 1, "messenger:1", b"m" * 16, 1, b"x"
        )
        count = SendCount(A_ID, b_id, ConversationState.REQUEST)
        await s.mailboxes.enqueue([env], now=5, expires_at=10**15, cap=10, count=count)
        assert (await metadata.policy_view(b_id, A_ID, keys)).state is ConversationState.REQUEST
        await s.metadata.set_state(b_id, A_ID, ConversationState.DECLINED, now=6)
        assert (await metadata.policy_view(b_id, A_ID, keys)).state is ConversationState.DECLINED
        assert await s.accounts.remove_device(b_id, second)
        assert [d.device_id for d in await s.accounts.list_devices(b_id)] == [1]
    finally:
        await engine.close()


async def test_a_lone_failing_operation_leaves_nothing_behind(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        with pytest.raises(ValueError, match="refused"):
            await db.write(insert_then_fail, "b")
        assert await db.read(accounts) == []
        assert await db.write(insert, "a") == "a"  # the writer goes on
        assert await db.read(accounts) == ["a"]
    finally:
        await db.close()


def _one_device_at_schema(
    path: Path, version: int, *, last_seq: int, expired_count: int = 0
) -> sqlite3.Connection:
    """A database file at schema ``version`` with account ``A_ID`` and its device 1; the
    connection is left open for more rows (commit and close it)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, sql in load_migrations()[:version]:
        conn.executescript(f"{sql}\nINSERT INTO schema_version (version) VALUES ({number});")
    conn.execute(
        "INSERT INTO accounts (account_id, app, identifier, created_at)"
        " VALUES (?, 'messenger', '5', 1)",
        (str(A_ID),),
    )
    conn.execute(
        "INSERT INTO devices (account_id, device_id, registration_id, salt, password_hash,"
        " created_at, last_seq, expired_count) VALUES (?, 1, 1, x'00', x'00', 1, ?, ?)",
        (str(A_ID), last_seq, expired_count),
    )
    return conn


def _opened(conn: sqlite3.Connection, path: Path) -> SqliteEngine:
    """Commit and close ``conn``, then open ``path`` as the engine does (migrating it)."""
    conn.commit()
    conn.close()
    return SqliteEngine.open(path)


def _new_envelope(key: bytes) -> OutgoingEnvelope:
    return OutgoingEnvelope(A_ID, DeviceId(1), key, 1, None, None, None, key, 1, b"new")


async def test_schema_6_keeps_mailboxes_and_delivered_records(tmp_path: Path) -> None:
    """Migration 6 rebuilds the mailbox tables (clustered, no foreign keys): queued envelopes,
    their seqs and the delivered records (dedupe after ack) survive it."""
    path = tmp_path / "k.db"
    conn = _one_device_at_schema(path, 5, last_seq=7)
    account = str(A_ID)
    for seq, key in ((6, b"q" * 16), (7, b"r" * 16)):
        conn.execute(
            "INSERT INTO envelopes (account_id, device_id, seq, dedupe_key, type, message_id,"
            " client_timestamp, server_timestamp, expires_at, body)"
            " VALUES (?, 1, ?, ?, 1, ?, 1, 2, ?, ?)",
            (account, seq, key, key, 10**15, b"body%d" % seq),
        )
    conn.execute(
        "INSERT INTO delivered (account_id, device_id, dedupe_key, expires_at) VALUES (?, 1, ?, ?)",
        (account, b"d" * 16, 10**15),
    )
    engine = _opened(conn, path)
    mailboxes = engine.storage.mailboxes
    try:
        got = await mailboxes.fetch(A_ID, DeviceId(1), after_seq=0, limit=10, now=3)
        assert [(e.seq, e.body) for e in got] == [(6, b"body6"), (7, b"body7")]
        # a queued key and a delivered key are still deduplicated; a new key gets the next seq
        assert not await mailboxes.enqueue(
            [_new_envelope(b"q" * 16), _new_envelope(b"d" * 16)], now=4, expires_at=10**15, cap=10
        )
        queued = await mailboxes.enqueue(
            [_new_envelope(b"n" * 16)], now=4, expires_at=10**15, cap=10
        )
        assert [e.seq for e in queued.envelopes[queued[0]]] == [8]
        await mailboxes.acknowledge(
            A_ID, DeviceId(1), [6, 8], now=5, expires_at=10**15, receipt_source_address=None
        )
        got = await mailboxes.fetch(A_ID, DeviceId(1), after_seq=0, limit=10, now=5)
        assert [e.seq for e in got] == [7]
    finally:
        await engine.close()
    conn = sqlite3.connect(path)
    schema = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    conn.close()
    assert "WITHOUT ROWID" in schema["envelopes"]
    assert "WITHOUT ROWID" in schema["delivered"]


async def test_schema_7_drops_the_expiry_indexes_and_keeps_the_mailboxes(
    tmp_path: Path,
) -> None:
    """Migration 7 drops the expiry indexes: queued envelopes, delivered records and the
    expired counts survive it, and the sweep (now scans) still deletes and counts exactly."""
    path = tmp_path / "k.db"
    conn = _one_device_at_schema(path, 6, last_seq=7, expired_count=2)
    account = str(A_ID)
    for seq, key, expires_at in ((6, b"q" * 16, 100), (7, b"r" * 16, 10**15)):
        conn.execute(
            "INSERT INTO envelopes (account_id, device_id, seq, dedupe_key, type, message_id,"
            " client_timestamp, server_timestamp, expires_at, body)"
            " VALUES (?, 1, ?, ?, 1, ?, 1, 2, ?, ?)",
            (account, seq, key, key, expires_at, b"body%d" % seq),
        )
    for key, expires_at in ((b"d" * 16, 10**15), (b"e" * 16, 100)):
        conn.execute(
            "INSERT INTO delivered (account_id, device_id, dedupe_key, expires_at)"
            " VALUES (?, 1, ?, ?)",
            (account, key, expires_at),
        )
    engine = _opened(conn, path)
    mailboxes = engine.storage.mailboxes
    try:
        got = await mailboxes.fetch(A_ID, DeviceId(1), after_seq=0, limit=10, now=3)
        assert [(e.seq, e.body) for e in got] == [(6, b"body6"), (7, b"body7")]
        assert await mailboxes.expire(100) == 1
        assert await mailboxes.take_expired_count(A_ID, DeviceId(1)) == 3
        # the live delivered key is still refused, the swept one is free, seqs go on
        assert not await mailboxes.enqueue(
            [_new_envelope(b"d" * 16)], now=101, expires_at=10**15, cap=10
        )
        queued = await mailboxes.enqueue(
            [_new_envelope(b"e" * 16)], now=101, expires_at=10**15, cap=10
        )
        assert [e.seq for e in queued.envelopes[queued[0]]] == [8]
    finally:
        await engine.close()
    conn = sqlite3.connect(path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    delivered = conn.execute("SELECT dedupe_key FROM delivered").fetchall()
    conn.close()
    assert "envelopes_by_expiry" not in indexes
    assert "delivered_by_expiry" not in indexes
    assert "envelopes_by_dedupe" in indexes
    assert delivered == [(b"d" * 16,)]


async def test_schema_8_moves_each_devices_seq_to_a_table_kept_by_triggers(
    tmp_path: Path,
) -> None:
    """Migration 8 moves ``devices.last_seq`` to ``mailbox_seq``: the counter survives, goes
    on after the mailbox empties, starts at 0 for a new device and leaves with its device."""
    path = tmp_path / "k.db"
    engine = _opened(_one_device_at_schema(path, 7, last_seq=41), path)
    storage = engine.storage

    def env(device: int, key: bytes) -> OutgoingEnvelope:
        return OutgoingEnvelope(A_ID, DeviceId(device), key, 1, None, None, None, key, 1, b"x")

    async def seqs(device: int, key: bytes) -> list[int]:
        queued = await storage.mailboxes.enqueue(
            [env(device, key)], now=2, expires_at=10**15, cap=10
        )
        return [e.seq for e in queued.envelopes[queued[0]]]

    try:
        assert await storage.mailboxes.last_seq(A_ID, DeviceId(1)) == 41
        assert await seqs(1, b"a" * 16) == [42]
        await storage.mailboxes.acknowledge(
            A_ID, DeviceId(1), [42], now=3, expires_at=10**15, receipt_source_address=None
        )
        assert await seqs(1, b"b" * 16) == [43]  # the mailbox was empty: never reused
        linked = await storage.accounts.add_device(
            A_ID, NewDevice(None, 2, b"s" * 16, b"h" * 32), now=4, max_devices=6
        )
        assert await seqs(linked, b"c" * 16) == [1]
        assert await storage.accounts.remove_device(A_ID, linked)
    finally:
        await engine.close()
    conn = sqlite3.connect(path)
    counters = conn.execute("SELECT account_id, device_id, last_seq FROM mailbox_seq").fetchall()
    columns = [r[1] for r in conn.execute("PRAGMA table_info(devices)")]
    conn.close()
    assert counters == [(str(A_ID), 1, 43)]
    assert "last_seq" not in columns


def _conversations(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    for _, sql in load_migrations():
        conn.executescript(sql)
    return conn


def test_record_send_in_tells_when_a_conversation_changed(tmp_path: Path) -> None:
    """A change is reported exactly when a side is created or the sender's side becomes
    accepted (the cache forgets the pair then); the counts land on the right sides."""
    conn = _conversations(tmp_path)
    request, accepted = ConversationState.REQUEST, ConversationState.ACCEPTED

    def rows() -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT account_id, peer_account, state, sent_count, received_count, last_activity"
            " FROM conversations ORDER BY account_id, peer_account"
        ).fetchall()

    assert record_send_in(conn, "a", "b", request, 1)  # both sides created
    assert rows() == [("a", "b", "accepted", 1, 0, 1), ("b", "a", "request", 0, 1, 1)]
    assert not record_send_in(conn, "a", "b", accepted, 2)  # counts only
    assert rows() == [("a", "b", "accepted", 2, 0, 2), ("b", "a", "request", 0, 2, 2)]
    assert record_send_in(conn, "b", "a", accepted, 3)  # the reply accepts b's side
    assert rows() == [("a", "b", "accepted", 2, 1, 3), ("b", "a", "accepted", 1, 2, 3)]
    conn.execute("DELETE FROM conversations WHERE account_id = 'a'")
    assert record_send_in(conn, "b", "a", request, 4)  # the recipient's side is created
    assert rows() == [("a", "b", "request", 0, 1, 4), ("b", "a", "accepted", 2, 2, 4)]
    conn.execute("DELETE FROM conversations WHERE account_id = 'b'")
    assert record_send_in(conn, "b", "a", request, 5)  # the sender's side is created
    assert rows() == [("a", "b", "request", 0, 2, 5), ("b", "a", "accepted", 1, 0, 5)]
    assert record_send_in(conn, "c", "c", request, 6)  # a note to self: one row, both counts
    assert rows()[-1] == ("c", "c", "accepted", 1, 1, 6)
    assert not record_send_in(conn, "c", "c", request, 7)
    assert rows()[-1] == ("c", "c", "accepted", 2, 2, 7)
    conn.close()


async def test_delivered_records_are_swept_a_slice_at_a_time(tmp_path: Path) -> None:
    """Schema 7: each sweep deletes the expired delivered records of the account id slices
    due since the last one (a full pass per day, wrapping around), the whole table on the
    first sweep or after a day without one; a live record always stays."""
    path = tmp_path / "k.db"
    await SqliteEngine.open(path).close()
    day, minute = 86_400_000, 60_000
    t0 = 10 * day
    low, high = str(UUID(int=1)), str(UUID(int=0xFFFFFFFF << 96))  # first and last slice

    def put(*rows: tuple[str, bytes, int]) -> None:
        conn = sqlite3.connect(path)
        conn.executemany(
            "INSERT INTO delivered (account_id, device_id, dedupe_key, expires_at)"
            " VALUES (?, 1, ?, ?)",
            rows,
        )
        conn.commit()
        conn.close()

    def left() -> list[tuple[str, bytes]]:
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT account_id, dedupe_key FROM delivered ORDER BY 1, 2")
        found = [(str(a), bytes(k)) for a, k in rows]
        conn.close()
        return found

    put((low, b"a", 5), (high, b"a", 5), (low, b"live", 10**15))
    engine = SqliteEngine.open(path)
    mailboxes = engine.storage.mailboxes
    try:
        await mailboxes.expire(t0)  # the first sweep: the whole table
        assert left() == [(low, b"live")]
        put((low, b"b", t0), (high, b"b", t0))
        await mailboxes.expire(t0 + minute // 2)  # no slice due yet
        assert left() == [(low, b"b"), (low, b"live"), (high, b"b")]
        await mailboxes.expire(t0 + minute)  # slice 0
        assert left() == [(low, b"live"), (high, b"b")]
        await mailboxes.expire(t0 + day - minute)  # slices 1 to 1438
        assert left() == [(low, b"live"), (high, b"b")]
        put((low, b"c", t0))
        await mailboxes.expire(t0 + day + minute)  # slice 1439, then slice 0 again
        assert left() == [(low, b"live")]
        put((high, b"d", t0))
        await mailboxes.expire(t0 + 3 * day)  # a day's worth due: the whole table
        assert left() == [(low, b"live")]
    finally:
        await engine.close()
