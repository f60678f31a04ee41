"""The SQLite writer process: what crosses to it and back, its death, its end, its orphans."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import pickle
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import cast
from uuid import UUID

import pytest

from kurir.server.storage import errors, groups
from kurir.server.storage.codes import Redeemed
from kurir.server.storage.errors import MailboxFull, StorageError
from kurir.server.storage.groups import GroupRecord, MemberRecord, Role
from kurir.server.storage.metadata_records import ConversationState, Reachability
from kurir.server.storage.records import (
    DeviceKeys,
    Enqueued,
    KeyBundle,
    OneTimeKey,
    OutgoingEnvelope,
    SendCount,
    SignedKey,
    StoredEnvelope,
)
from kurir.server.storage.sqlite_db import Database, check_not_in_use
from kurir.server.storage.sqlite_writer import (
    IDLE_CHECKPOINT_COMMITS,
    decode,
    frame,
    transferable,
)
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address
from server.storage.writer_ops import (
    TwoArgumentError,
    accounts,
    echo,
    hold,
    insert,
    raise_two_argument,
    refuse_full,
    unpicklable_result,
)

A_ID = AccountId(UUID(int=1))
B_ID = AccountId(UUID(int=2))
REF = DeviceRef(A_ID, DeviceId(3))


def _storage_errors() -> list[type[StorageError]]:
    found: list[type[StorageError]] = []
    for module in (errors, groups):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, StorageError):
                found.append(value)
    return sorted(set(found), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _storage_errors(), ids=lambda c: c.__name__)
def test_every_storage_error_survives_pickling(cls: type[StorageError]) -> None:
    error = MailboxFull([REF]) if cls is MailboxFull else cls("a reason")
    again = pickle.loads(pickle.dumps(error, pickle.HIGHEST_PROTOCOL))
    assert type(again) is cls
    assert again.args == error.args
    assert vars(again) == vars(error)
    assert transferable(error) is error


def test_an_exception_that_cannot_cross_becomes_a_storage_error() -> None:
    replaced = transferable(TwoArgumentError(7, "odd"))
    assert type(replaced) is StorageError
    assert "TwoArgumentError" in str(replaced)


def test_results_survive_pickling_and_compare_equal() -> None:
    stored = StoredEnvelope(4, 1, B_ID, DeviceId(2), "messenger:2", b"m" * 16, 5, 6, b"body")
    enqueued = Enqueued([REF], {REF: [stored]})
    again = pickle.loads(pickle.dumps(enqueued, pickle.HIGHEST_PROTOCOL))
    assert type(again) is Enqueued
    assert again == enqueued
    assert again.envelopes == enqueued.envelopes
    empty = pickle.loads(pickle.dumps(Enqueued(), pickle.HIGHEST_PROTOCOL))
    assert empty == []
    assert empty.envelopes == {}
    signed = SignedKey(1, b"k", b"s")
    bundle = KeyBundle(
        b"i", (DeviceKeys(DeviceId(1), 9, signed, OneTimeKey(2, b"o"), signed, True),)
    )
    group = GroupRecord(
        groups.GroupId(UUID(int=9)),
        "g",
        None,
        1,
        2,
        3,
        (MemberRecord(A_ID, Address("messenger", "1"), Role.ADMIN, 2, (DeviceId(1),)),),
    )
    for value in (stored, bundle, group, Redeemed(A_ID), (enqueued, True)):
        assert pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) == value


class _Local(enum.Enum):
    ONE = 1


class _Flags(enum.Flag):
    A = 1
    B = 2


@dataclasses.dataclass(frozen=True)
class _Plain:
    value: int
    named: str = dataclasses.field(default="n", kw_only=True)


def _records() -> list[object]:
    envelope = OutgoingEnvelope(
        B_ID, DeviceId(1), b"k" * 16, 1, A_ID, DeviceId(2), None, b"m", 3, b"b"
    )
    stored = StoredEnvelope(4, 1, None, None, "messenger:2", b"m" * 16, 5, 6, b"")
    safe = UUID(bytes=b"u" * 16, is_safe=uuid.SafeUUID.safe)
    return [
        [envelope, envelope],
        SendCount(A_ID, B_ID, ConversationState.REQUEST),
        Reachability.CONTACTS,
        safe,
        Enqueued([REF], {REF: [stored]}),
        Enqueued(),
        _Local.ONE,
        _Plain(3, named="x"),
        {"k": (A_ID, None, 1.5, True)},
        Address("messenger", "1"),
        ConversationState,  # a class of a metaclass
        _Flags.A | _Flags.B,
        _Flags.B,
    ]


def test_calls_and_outcomes_cross_a_frame_unchanged() -> None:
    calls = [(insert, ("a",), {}), (echo, tuple(_records()), {"named": A_ID})]
    data = frame([7, 8], calls)
    ids, items = decode(data[4:])
    assert ids == [7, 8]
    assert items == calls
    values = items[1][1]
    assert [type(v) for v in values] == [type(v) for v in _records()]
    assert values[0][0] is values[0][1]  # one object stays one object
    assert values[1].recipient_state is ConversationState.REQUEST
    assert values[2] is Reachability.CONTACTS
    assert values[6] is _Local.ONE
    assert values[10] is ConversationState
    assert values[11] == _Flags.A | _Flags.B
    assert values[3].is_safe is uuid.SafeUUID.safe
    assert values[4].envelopes == _records()[4].envelopes  # type: ignore[attr-defined]
    assert isinstance(items[1][2]["named"], UUID)


async def test_records_cross_to_the_writer_and_back(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        values, named, types = cast(
            tuple[tuple[object, ...], dict[str, object], list[str]],
            await db.write(echo, *_records(), who=A_ID),
        )
        assert list(values) == _records()
        assert types == [type(v).__name__ for v in _records()]
        assert [type(v) for v in values] == [type(v) for v in _records()]
        assert named == {"who": A_ID}
    finally:
        await db.close()


async def test_messages_longer_than_one_read_cross_whole(tmp_path: Path) -> None:
    # a call and its outcome of about 1 MiB each, beside small ones in the same batch: each
    # side reads them in several chunks
    big = bytes(range(256)) * 4096
    db = Database.open(tmp_path / "k.db")
    try:
        results = await asyncio.gather(
            db.write(echo, b"small"), db.write(echo, big), db.write(echo, 7)
        )
        assert [r[0] for r in results] == [(b"small",), (big,), (7,)]
    finally:
        await db.close()


async def test_an_operations_exception_crosses_with_its_attributes(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        with pytest.raises(MailboxFull) as raised:
            await db.write(refuse_full, [REF])
        assert raised.value.devices == [REF]
        assert raised.value.args == ("1 mailbox(es) full",)
        with pytest.raises(StorageError, match="TwoArgumentError"):
            await db.write(raise_two_argument)
        with pytest.raises(StorageError, match="cannot be sent back"):
            await db.write(unpicklable_result)
        assert await db.write(insert, "a") == "a"  # the writer goes on
    finally:
        await db.close()


async def test_closures_are_refused_at_the_call(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    row = "a"

    def closure(conn: sqlite3.Connection) -> str:
        return insert(conn, row)

    try:
        with pytest.raises(TypeError, match="module-level"):
            await db.write(closure)
        with pytest.raises(StorageError, match="cannot be sent"):
            await db.write(insert, (lambda: None))  # type: ignore[arg-type]
        assert await db.read(accounts) == []
    finally:
        await db.close()


async def test_a_dead_writer_fails_every_write_and_nothing_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database.open(tmp_path / "k.db")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    try:
        assert await db.write(insert, "a") == "a"
        held = asyncio.create_task(db.write(hold, str(gate)))
        release = await asyncio.to_thread(open, gate, "wb")  # the writer is inside ``hold``
        queued = asyncio.create_task(db.write(insert, "b"))
        await asyncio.sleep(0)
        os.kill(db.writer_pid, signal.SIGKILL)
        release.close()
        async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
            with pytest.raises(StorageError):
                await held
            with pytest.raises(StorageError):
                await queued
            with pytest.raises(StorageError):
                await db.write(insert, "c")
        assert await db.read(accounts) == ["a"]  # reads go on
    finally:
        await db.close()
    ended = [r for r in caplog.records if "writer process has ended" in r.getMessage()]
    assert len(ended) == 1
    assert ended[0].levelno == logging.ERROR


async def test_close_commits_every_queued_write(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    db = Database.open(path)
    names = [f"q{i:03d}" for i in range(600)]  # more than one batch
    tasks = [asyncio.create_task(db.write(insert, n)) for n in names]
    await asyncio.sleep(0)  # every task has queued its write
    async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
        await db.close()
        assert await asyncio.gather(*tasks) == names
    conn = sqlite3.connect(path)
    try:
        assert accounts(conn) == names
    finally:
        conn.close()
    check_not_in_use(path)  # the writer process has released the owner lock too


def _rows_in_main_file(path: Path, copy: Path) -> list[str]:
    """The accounts in the database file alone, without its WAL (a copy, so that opening it
    neither reads nor checkpoints the WAL); none while the copy is caught mid-write."""
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return accounts(conn)
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()


async def test_an_idle_writer_checkpoints_what_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    db = Database.open(path)
    names = [f"c{i:03d}" for i in range(IDLE_CHECKPOINT_COMMITS)]
    copy = tmp_path / "main-file-only.db"
    try:
        for name in names[:-1]:  # one commit each, far fewer pages than SQLite's own mark
            await db.write(insert, name)
        await asyncio.sleep(0.5)  # idle, but one commit short
        assert _rows_in_main_file(path, copy) == []
        await db.write(insert, names[-1])
        found: list[str] = []
        for _ in range(600):  # a bound for a broken build, not a timing assertion
            found = _rows_in_main_file(path, copy)
            if found:
                break
            await asyncio.sleep(0.05)
        assert found == names
    finally:
        await db.close()


_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from kurir.server.storage.sqlite_db import Database
    from server.storage.writer_ops import insert

    async def main() -> None:
        db = Database.open(Path(sys.argv[1]))
        await db.write(insert, "a")
        print(db.writer_pid, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_no_writer_outlives_a_killed_server(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    tests_dir = str(Path(__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, *sys.path])}
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert server.stdout is not None
        writer = int(server.stdout.readline())
        exited = os.pidfd_open(writer)
        try:
            server.kill()  # SIGKILL: no clean-up runs in the server
            server.wait()
            # readable once the writer has exited; the bound only stops a broken build hanging
            ready, _, _ = select.select([exited], [], [], 60)
            assert ready == [exited]
        finally:
            os.close(exited)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    check_not_in_use(path)  # nobody holds the owner lock any more
    conn = sqlite3.connect(path)
    try:
        assert accounts(conn) == ["a"]
    finally:
        conn.close()
