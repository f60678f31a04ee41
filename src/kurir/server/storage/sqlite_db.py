"""The SQLite database: one writer thread with group commit, reads on the loop, migrations.

This module owns the connection lifecycle of the embedded engine. All writes run on ONE
dedicated thread: it takes every queued operation, runs the batch in a single transaction,
COMMITs once (group commit), and only then resolves the callers' futures, so a caller's
``await`` returns after its change is on disk. An operation that raises is isolated: the batch
is rolled back and run again with each operation inside its own SAVEPOINT, so only the failing
operation's changes are lost (the common, all-succeed batch pays no savepoint statements).

Reads run synchronously on the calling event loop's thread, on their own WAL connection: a
point read costs a few microseconds, far less than a hop to a thread and back. A read that
runs longer than :data:`ON_LOOP_VM_STEPS` SQLite instructions is interrupted and run again on
the bulk-reader thread (its own connection), so no read stalls the loop for long;
:meth:`Database.read_bulk` goes there directly for reads known to be large. Every connection is
in autocommit mode, so each read statement sees every transaction committed before it started.

It knows nothing of accounts or mailboxes: operations are plain callables over a
:class:`sqlite3.Connection`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import importlib.resources
import logging
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

from kurir.server.storage.errors import DatabaseInUse, SchemaTooNew, StorageError

__all__ = ["ON_LOOP_VM_STEPS", "Database", "check_not_in_use", "check_schema", "load_migrations"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_MAX_BATCH: Final = 256
ON_LOOP_VM_STEPS: Final = 20_000
"""SQLite instructions (per statement) a read may run on the event loop before it is moved to
the bulk-reader thread; about a millisecond on the machine of ``docs/performance.md``
(``bench/sqlite_io.py`` measures it)."""
_MIGRATION_NAME: Final = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def load_migrations() -> list[tuple[int, str]]:
    """Return the packaged migrations as (version, sql) in order; numbering must have no gaps."""
    package = importlib.resources.files("kurir.server.storage.migrations")
    found: list[tuple[int, str]] = []
    for entry in package.iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match is not None:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise StorageError("migrations are not numbered 1..n without gaps")
    return found


def check_schema(path: Path) -> None:
    """Refuse early, without writing anything, a database written by a newer kurir.

    Raises:
        SchemaTooNew: The file's schema version is beyond the packaged migrations.
    """
    if not path.exists():
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return  # no schema_version table yet: a fresh or foreign file, migrate() decides
    finally:
        conn.close()
    current = int(row[0]) if row is not None and row[0] is not None else 0
    known = len(load_migrations())
    if current > known:
        raise SchemaTooNew(f"database schema {current} is newer than this kurir ({known})")


def _take_ownership(path: Path) -> int:
    """Lock ``<database>.lock`` for this process, or refuse: the embedded engine has one owner
    (its writer thread batches every write, and its read cache sees every change), so a second
    ``kurir serve`` or ``kurir migrate`` on the same file is refused instead of racing it. The
    lock goes with the process, however it ends.

    Raises:
        DatabaseInUse: Another process holds it.
    """
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseInUse(f"{path} is in use by another kurir process") from None
    return fd


def check_not_in_use(path: Path) -> None:
    """Refuse early, before listening, a database another process has open.

    Raises:
        DatabaseInUse: Another process holds it.
    """
    if path.parent.exists():
        os.close(_take_ownership(path))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _migrate(conn: sqlite3.Connection, migrations: list[tuple[int, str]]) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = int(row[0]) if row is not None and row[0] is not None else 0
    known = migrations[-1][0] if migrations else 0
    if current > known:
        raise SchemaTooNew(f"database schema {current} is newer than this kurir ({known})")
    for version, sql in migrations:
        if version <= current:
            continue
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                f"INSERT INTO schema_version (version) VALUES ({version:d});\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        _log.info("applied storage migration %d", version)


@dataclass
class _Op(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]


_Outcome = tuple[_Op[object], object, BaseException | None]


def _resolve(outcomes: list[_Outcome]) -> None:
    """On the event loop: settle every future of one committed batch (one wake-up)."""
    for op, result, error in outcomes:
        if op.future.done():  # its caller was cancelled meanwhile
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)


def _hand_back(outcomes: list[_Outcome]) -> None:
    """On the writer thread: one ``call_soon_threadsafe`` per event loop of the batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].future.get_loop(), []).append(outcome)
    for loop, mine in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these any more
            loop.call_soon_threadsafe(_resolve, mine)


def _failed_batch(
    conn: sqlite3.Connection, batch: list[_Op[object]], exc: Exception
) -> list[_Outcome]:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    _log.error("storage transaction failed: %s", type(exc).__name__)
    return [(op, None, StorageError("transaction failed")) for op in batch]


class Database:
    """An open SQLite database file with its writer and bulk-reader threads.

    Use :meth:`open` (blocking: runs migrations) and always :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        bulk_reader: sqlite3.Connection,
    ) -> None:
        self.path = path
        self._writer_conn = writer
        self._reader_conn = reader
        self._bulk_conn = bulk_reader
        # held while a read runs on ``reader``: a read from another thread, or one started
        # while another is running, goes to the bulk thread instead of sharing the connection
        self._reader_busy = threading.Lock()
        self._overrun = False
        reader.set_progress_handler(self._interrupt, ON_LOOP_VM_STEPS)
        self._queue: queue.SimpleQueue[_Op[object] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="kurir-sqlite-writer")
        self._bulk = concurrent.futures.ThreadPoolExecutor(1, "kurir-sqlite-bulk")
        self._closed = False
        self._lock: int | None = None  # the owner lock's descriptor, from :meth:`open`
        self._writer.start()

    @classmethod
    def open(cls, path: Path) -> Database:
        """Open (creating if needed) and migrate the database at ``path``.

        Raises:
            SchemaTooNew: The file was written by a newer kurir.
            DatabaseInUse: Another process has the file open.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _take_ownership(path)
        opened: list[sqlite3.Connection] = []
        try:
            opened.append(_connect(path))
            _migrate(opened[0], load_migrations())
            opened.append(_connect(path))
            opened.append(_connect(path))
        except BaseException:
            for conn in opened:
                conn.close()
            os.close(lock)
            raise
        database = cls(path, *opened)
        database._lock = lock
        return database

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the next group-committed transaction; return once committed.

        If ``fn`` raises, only its own changes are rolled back and the exception is re-raised
        here; the other operations of the batch still commit. ``fn`` may run more than once
        (an earlier run rolled back), so it must change nothing outside the connection.
        """
        if self._closed:
            raise StorageError("database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Op(fn, future))  # type: ignore[arg-type]
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader connection, on this thread; it sees every committed write.

        ``fn`` must only read, and may run twice: a run longer than :data:`ON_LOOP_VM_STEPS`
        instructions per statement is interrupted and ``fn`` runs again on the bulk thread.
        """
        if self._closed:
            raise StorageError("database is closed")
        if not self._reader_busy.acquire(blocking=False):
            return await self.read_bulk(fn)
        try:
            self._overrun = False
            try:
                result = fn(self._reader_conn)
            except Exception:
                if not self._overrun:
                    raise
            else:
                if not self._overrun:
                    return result
        finally:
            self._reader_busy.release()
        return await self.read_bulk(fn)  # interrupted: too long for the event loop

    async def read_bulk(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the bulk-reader thread's connection; it sees every committed write.

        For reads that may return many rows or scan much (a transparency report, a large
        mailbox fetch): they run off the event loop from the start.
        """
        if self._closed:
            raise StorageError("database is closed")
        return await asyncio.wrap_future(self._bulk.submit(fn, self._bulk_conn))

    def _interrupt(self) -> int:
        """SQLite progress handler of the reader connection: stop a read that runs too long."""
        self._overrun = True
        return 1

    def _write_loop(self) -> None:
        conn = self._writer_conn
        stop = False
        while not stop:
            first = self._queue.get()
            batch: list[_Op[object]] = []
            if first is None:
                stop = True
            else:
                batch.append(first)
            while len(batch) < _MAX_BATCH and not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            # an operation whose caller gave up before it started is skipped; once started it
            # runs to its commit even if the caller is cancelled meanwhile
            batch = [op for op in batch if not op.future.cancelled()]
            if batch:
                try:
                    outcomes = self._run_batch(conn, batch)
                except Exception:  # never let the writer thread die: callers would hang
                    _log.exception("storage writer failed")
                    outcomes = [(op, None, StorageError("transaction failed")) for op in batch]
                _hand_back(outcomes)
        conn.close()

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list[_Op[object]]) -> list[_Outcome]:
        """Run ``batch`` in one transaction; return each operation's result or error.

        Optimistic: the operations run back to back without savepoints. If one raises, the whole
        transaction is rolled back and the batch runs again through :meth:`_run_isolated`, which
        gives every operation its own savepoint and reports the first run's error for the failed
        one (not running it again): the operations before it see the same state in both runs, so
        the outcome is the one per-operation savepoints give. An operation may thus run twice,
        its first run rolled back, and must change nothing outside the connection (as on
        PostgreSQL, where a transaction may be retried).
        """
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for index, op in enumerate(batch):
                try:
                    result = op.fn(conn)
                except Exception as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if len(batch) == 1:  # nothing else to keep
                        return [(op, None, exc)]
                    return Database._run_isolated(conn, batch, failed=index, error=exc)
                outcomes.append((op, result, None))
            conn.execute("COMMIT")
        except Exception as exc:
            return _failed_batch(conn, batch, exc)
        return outcomes

    @staticmethod
    def _run_isolated(
        conn: sqlite3.Connection, batch: list[_Op[object]], *, failed: int, error: Exception
    ) -> list[_Outcome]:
        """Run ``batch`` in one transaction, each operation inside its own SAVEPOINT.

        ``batch[failed]`` already raised ``error`` against the state the operations before it
        leave: it is not run again, its error is its outcome.
        """
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for index, op in enumerate(batch):
                if index == failed:
                    outcomes.append((op, None, error))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    result = op.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((op, None, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((op, result, None))
            conn.execute("COMMIT")
        except Exception as exc:
            return _failed_batch(conn, batch, exc)
        return outcomes

    async def close(self) -> None:
        """Finish queued writes, then stop both threads and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._writer.join)
        await asyncio.wrap_future(self._bulk.submit(self._bulk_conn.close))
        self._bulk.shutdown(wait=True)
        with self._reader_busy:
            self._reader_conn.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the owner lock
            self._lock = None
