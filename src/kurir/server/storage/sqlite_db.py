"""The SQLite database: a writer process with group commit, reads on the loop, migrations.

This module owns the connection lifecycle of the embedded engine, in the server process. All
writes run in ONE writer process (:mod:`.sqlite_writer`, started by :meth:`Database.open`
after the migrations): it takes every queued operation, runs the batch in a single
transaction, COMMITs once (group commit), and only then sends the outcomes back, so a caller's
``await`` returns after its change is on disk. An operation that raises is isolated: only its
own changes are lost, and its exception is raised in the caller, attributes and all. The
writer is a process, not a thread, so that it and the event loop each have a core and a GIL
(a thread shared the loop's GIL: together they never used more than one core).

A write operation is therefore a module-level function ``fn(conn, *args)`` with picklable
arguments and result (``await db.write(fn, *args)``), not a closure: it is sent by name to
the writer process. Calls queued in one event-loop iteration go as one message; the outcomes
of one committed batch come back as one message, which the event loop that awaits them reads
and settles itself, without a thread in between (when writes of several loops are pending, a
thread reads and hands each loop its own: :class:`_WriterProcess`). If the writer process
ends, every pending and later write fails with :class:`StorageError` (logged once); nothing
waits forever.

Reads run synchronously on the calling event loop's thread, on their own WAL connection: a
point read costs a few microseconds, far less than a hop to a thread and back. A read that
runs longer than :data:`ON_LOOP_VM_STEPS` SQLite instructions is interrupted and run again on
the bulk-reader thread (its own connection), so no read stalls the loop for long;
:meth:`Database.read_bulk` goes there directly for reads known to be large. Every connection is
in autocommit mode, so each read statement sees every transaction committed before it started,
the writer process's included (WAL).

This process holds the owner lock (``kurir.db.lock``); the writer process shares it and
keeps it until it exits, at the latest one batch after this process ends.

It knows nothing of accounts or mailboxes: operations are plain functions over a
:class:`sqlite3.Connection`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import importlib.resources
import itertools
import logging
import os
import re
import select
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from kurir.server.storage.errors import DatabaseInUse, SchemaTooNew, StorageError
from kurir.server.storage.sqlite_writer import Call, Reader, command, connect, decode, frame

__all__ = ["ON_LOOP_VM_STEPS", "Database", "check_not_in_use", "check_schema", "load_migrations"]

P = ParamSpec("P")
T = TypeVar("T")
_log = logging.getLogger(__name__)
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
    (its writer process batches every write, and its read cache sees every change), so a second
    ``kurir serve`` or ``kurir migrate`` on the same file is refused instead of racing it. The
    lock goes with the process and its writer process, however they end.

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


_Settled = tuple["asyncio.Future[Any]", object, BaseException | None]


def _resolve(settled: list[_Settled]) -> None:
    """On the event loop: settle every future of one committed batch (one wake-up)."""
    for future, result, error in settled:
        if future.done():  # its caller was cancelled meanwhile
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _hand_back(settled: list[_Settled]) -> None:
    """Off the event loop: one ``call_soon_threadsafe`` per event loop of the batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
    for item in settled:
        by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, mine in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these any more
            loop.call_soon_threadsafe(_resolve, mine)


class _WriterProcess:
    """The server's side of the writer process (:mod:`.sqlite_writer`).

    Calls: :meth:`submit` queues one; one :meth:`flush` per event-loop iteration pickles every
    queued call into one message and sends it without blocking (what the socket does not take
    at once, the ``kurir-sqlite-send`` thread sends).

    Outcomes: exactly one reader at a time reads the socket, the one ``_owner`` names:

    - **An event loop**, while every pending write is that loop's own (the server's case: it
      has one loop). The loop of such a write watches the socket (``add_reader``); when it is
      readable, the loop reads what has arrived without blocking, unpickles it and settles its
      futures in place: no thread wakes, no ``call_soon_threadsafe``, no self-pipe.
    - **Otherwise the** ``kurir-sqlite-results`` **thread** (started when first needed),
      which settles futures with one ``call_soon_threadsafe`` per loop: while a write of
      another loop is pending (a loop that stops running, or closes, would strand the other
      loop's outcomes), while :meth:`stop` drains, and to end (reaping the process blocks,
      and nobody awaits a loop that has closed).

    Every read, and every change of ``_owner``, holds ``_read_lock``: a read never overlaps
    another, and never runs in a reader that has stopped owning the socket. Only a loop makes
    itself the owner (:meth:`submit`, on its own thread); anyone may give the socket to the
    thread. A loop watches its own duplicate of the socket's descriptor and alone removes and
    closes it, on its own thread (its callback, finding that it no longer owns the socket, or
    :meth:`leave`), so no loop is left watching a closed descriptor, or a reused one.
    :meth:`stop` closes those of loops that have closed.

    If the process ends, every pending and later write fails with :class:`StorageError`.
    """

    def __init__(self, path: Path, lock: int, cpus: frozenset[int] | None = None) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command(theirs.fileno()),
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), lock),  # the owner lock lives as long as the writer
            )
        except OSError as exc:
            ours.close()
            raise StorageError(f"cannot start the SQLite writer process: {exc}") from exc
        finally:
            theirs.close()
        if cpus:
            try:
                os.sched_setaffinity(self._process.pid, cpus)
            except OSError as exc:
                self._process.kill()
                self._process.wait()
                ours.close()
                where = sorted(cpus)
                raise StorageError(f"cannot run the SQLite writer on CPUs {where}: {exc}") from exc
        self._sock = ours
        self._sock.sendall(frame([], [str(path), list(sys.path)]))
        self._lock = threading.Lock()  # guards every attribute below up to _owner
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._outbox: list[tuple[int, Call]] = []
        self._flush_scheduled = False
        self._backlog = bytearray()  # sent by the sender thread, in order
        self._sending = False
        self._stopping = False
        self._gone: str | None = None  # why nothing can be written any more
        # who reads the outcomes: a loop, or None for the results thread; changed only while
        # holding _read_lock and _lock (in that order), so either one makes it stable
        self._owner: asyncio.AbstractEventLoop | None = None
        self._read_lock = threading.Lock()  # guards every attribute below
        self._reader = Reader(self._sock)
        self._watching: dict[asyncio.AbstractEventLoop, int] = {}  # loop: its descriptor
        self._receiver: threading.Thread | None = None
        self._sender = threading.Thread(target=self._send, name="kurir-sqlite-send", daemon=True)
        self._sender.start()

    @property
    def pid(self) -> int:
        """The writer process's id."""
        return self._process.pid

    def submit(self, call: Call, future: asyncio.Future[Any]) -> None:
        """Queue ``call``; ``future`` (of the running loop) gets its outcome once committed.

        Raises:
            StorageError: The writer process has ended.
        """
        loop = future.get_loop()
        with self._lock:
            if self._gone is not None:
                raise StorageError(self._gone)
            op_id = next(self._ids)
            self._futures[op_id] = future
            self._outbox.append((op_id, call))
            owned = loop is self._owner
            scheduled, self._flush_scheduled = self._flush_scheduled, True
        if not owned:
            self._choose_reader(loop)
        if not scheduled:
            loop.call_soon(self.flush)

    def _choose_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``'s thread, which has just queued a write and does not own the socket:
        ``loop`` reads from now on if every pending write is its own, else the thread does."""
        with self._read_lock:
            with self._lock:
                if self._gone is not None:
                    return  # the thread is ending: it fails every pending future
                alone = (
                    not self._stopping
                    and not self._reader.eof
                    and all(f.get_loop() is loop for f in self._futures.values())
                )
                self._owner = loop if alone else None
                self._wake.notify_all()
            if alone:
                self._watch(loop)
            else:
                self._start_receiver()

    def flush(self) -> None:
        """Send every queued call as one message, without blocking."""
        refused: list[_Settled] = []
        with self._lock:
            self._flush_scheduled = False
            queued, self._outbox = self._outbox, []
            ids: list[int] = []
            calls: list[Call] = []
            for op_id, call in queued:  # a caller that gave up before the send is skipped
                if self._futures[op_id].cancelled():
                    del self._futures[op_id]
                else:
                    ids.append(op_id)
                    calls.append(call)
            if not ids:
                return
            try:
                data = frame(ids, calls)
            except Exception:  # an argument that cannot cross: refuse that call alone
                data = b""
                for op_id, call in zip(ids, calls, strict=True):
                    try:
                        data += frame([op_id], [call])
                    except Exception as exc:
                        error = StorageError(f"write operation cannot be sent: {exc!r}")
                        refused.append((self._futures.pop(op_id), None, error))
            if self._backlog or self._sending:
                sent = 0
            else:
                try:
                    sent = self._sock.send(data, socket.MSG_DONTWAIT)
                except OSError:  # full (the sender thread waits), or gone (the reader sees)
                    sent = 0
            if sent < len(data):
                self._backlog += data[sent:]
                self._wake.notify_all()
        if refused:
            _hand_back(refused)

    def _send(self) -> None:
        """The sender thread: sends what :meth:`flush` could not, blocking, in order."""
        while True:
            with self._lock:
                while not self._backlog and not self._stopping:
                    self._wake.wait()
                if not self._backlog:
                    return
                data = bytes(self._backlog)
                self._backlog.clear()
                self._sending = True
            with contextlib.suppress(OSError):  # the writer is gone: the reader fails all
                self._sock.sendall(data)
            with self._lock:
                self._sending = False
                self._wake.notify_all()

    def _read(self) -> list[_Settled]:
        """Holding ``_read_lock``: one ``recv`` without blocking, and the futures and outcomes
        of every message complete so far."""
        settled: list[_Settled] = []
        for payload in self._reader.read(block=False):
            ids, outcomes = decode(payload)
            if isinstance(outcomes, Exception):
                _log.error("storage outcomes could not be loaded: %r", outcomes)
                outcomes = [(None, StorageError("outcome could not be loaded"))] * len(ids)
            with self._lock:
                futures = [self._futures.pop(op_id) for op_id in ids]
            settled += [(f, r, e) for f, (r, e) in zip(futures, outcomes, strict=True)]
        return settled

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        """``loop``'s reader callback: settle what has arrived, this loop's futures in place
        (others' through their loops); stop watching if the socket is no longer this loop's,
        and give it to the thread at end of file."""
        with self._read_lock:
            if self._owner is not loop:
                self._unwatch(loop)
                return
            settled = self._read()
            if self._reader.eof:
                self._unwatch(loop)
                self._give_to_thread()
        mine: list[_Settled] = []
        others: list[_Settled] = []
        for item in settled:
            (mine if item[0].get_loop() is loop else others).append(item)
        _resolve(mine)
        if others:
            _hand_back(others)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Holding ``_read_lock``, on ``loop``'s thread: ``loop`` watches the socket."""
        if loop not in self._watching:
            fd = os.dup(self._sock.fileno())
            self._watching[loop] = fd
            loop.add_reader(fd, self._on_readable, loop)

    def _unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Holding ``_read_lock``, on ``loop``'s thread: ``loop`` stops watching the socket."""
        fd = self._watching.pop(loop, None)
        if fd is not None:
            loop.remove_reader(fd)
            os.close(fd)

    def _give_to_thread(self) -> None:
        """Holding ``_read_lock``: the results thread reads from now on."""
        with self._lock:
            self._owner = None
            self._wake.notify_all()
        self._start_receiver()

    def _start_receiver(self) -> None:
        """Holding ``_read_lock``: start the results thread, unless it has been started."""
        if self._receiver is None:
            self._receiver = threading.Thread(
                target=self._receive, name="kurir-sqlite-results", daemon=True
            )
            self._receiver.start()

    def _receive(self) -> None:
        """The results thread: reads while no loop does, until end of file; then ends."""
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while True:
            with self._lock:
                while self._owner is not None:
                    self._wake.wait()
            poller.poll()  # until something has arrived (or end of file), holding no lock
            with self._read_lock:
                if self._owner is not None:
                    continue  # a loop took the socket meanwhile
                settled = self._read()
                ended = self._reader.eof
            if settled:
                _hand_back(settled)
            if ended:
                break
        self._end("the SQLite writer process has ended")

    def _end(self, reason: str) -> None:
        with self._lock:
            self._gone = reason
            futures = list(self._futures.values())
            self._futures.clear()
            self._outbox.clear()
            self._backlog.clear()
            stopping = self._stopping
            self._wake.notify_all()
        if futures or not stopping:
            try:
                status: int | None = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                status = None
            _log.error("%s (exit status %s): every write fails from now on", reason, status)
        if futures:
            _hand_back([(f, None, StorageError(reason)) for f in futures])

    def leave(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``'s thread: ``loop`` stops watching the socket; if it read the outcomes,
        the thread reads them from now on (before :meth:`stop`, which may not run on it)."""
        with self._read_lock:
            self._unwatch(loop)
            if self._owner is loop:
                self._give_to_thread()

    def stop(self) -> None:
        """Blocking: send what is queued, let the writer commit it and exit, read every
        outcome on the thread, then reap the writer."""
        self.flush()
        with self._lock:
            while (self._backlog or self._sending) and self._gone is None:
                self._wake.wait()
            self._stopping = True
            self._wake.notify_all()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)  # end of file: the writer finishes and exits
        with self._read_lock:
            self._give_to_thread()
            receiver = self._receiver
        if receiver is not None:
            receiver.join()
        self._sender.join()
        self._process.wait()
        with self._read_lock:  # a loop that is still open closes its own when it runs
            for loop, fd in list(self._watching.items()):
                if loop.is_closed():
                    del self._watching[loop]
                    os.close(fd)
        self._sock.close()


class Database:
    """An open SQLite database file with its writer process and bulk-reader thread.

    Use :meth:`open` (blocking: runs migrations, starts the writer) and always :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        reader: sqlite3.Connection,
        bulk_reader: sqlite3.Connection,
        lock: int,
        writer_cpus: frozenset[int] | None = None,
    ) -> None:
        self.path = path
        self._reader_conn = reader
        self._bulk_conn = bulk_reader
        # held while a read runs on ``reader``: a read from another thread, or one started
        # while another is running, goes to the bulk thread instead of sharing the connection
        self._reader_busy = threading.Lock()
        self._overrun = False
        reader.set_progress_handler(self._interrupt, ON_LOOP_VM_STEPS)
        self._writer = _WriterProcess(path, lock, writer_cpus)
        self._bulk = concurrent.futures.ThreadPoolExecutor(1, "kurir-sqlite-bulk")
        self._closed = False
        self._lock: int | None = lock  # the owner lock's descriptor (the writer has a copy)
        self._last_loop: tuple[int, asyncio.AbstractEventLoop] | None = None  # see _running_loop

    @classmethod
    def open(cls, path: Path, *, writer_cpus: frozenset[int] | None = None) -> Database:
        """Open (creating if needed) and migrate the database at ``path``, then start its
        writer process (migrations run here first, in this process), on ``writer_cpus`` if
        given (``kurir serve --pin-cpus``).

        Raises:
            SchemaTooNew: The file was written by a newer kurir.
            DatabaseInUse: Another process has the file open.
            StorageError: The writer process cannot be started.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _take_ownership(path)
        opened: list[sqlite3.Connection] = []
        try:
            opened.append(connect(path))
            _migrate(opened[0], load_migrations())
            opened.append(connect(path))
            return cls(path, opened[0], opened[1], lock, writer_cpus)
        except BaseException:
            for conn in opened:
                conn.close()
            os.close(lock)
            raise

    @property
    def writer_pid(self) -> int:
        """The process id of the writer process (for tests and CPU accounting)."""
        return self._writer.pid

    async def write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in the next group-committed transaction, in the
        writer process; return its result once committed.

        ``fn`` must be a module-level function and its arguments and result picklable: they
        cross to the writer process and back. If ``fn`` raises, only its own changes are
        rolled back and the exception (pickled, with its attributes) is re-raised here; the
        other operations of the batch still commit. ``fn`` may run more than once (an earlier
        run rolled back), so it must change nothing outside the connection.

        Raises:
            StorageError: The database is closed, or its writer process has ended.
            TypeError: ``fn`` is not a module-level function of an importable module (a
                closure, a lambda, or a function of the ``__main__`` script).
        """
        if self._closed:
            raise StorageError("database is closed")
        if "<" in fn.__qualname__ or fn.__module__ == "__main__":  # cannot be imported there
            raise TypeError(
                f"write operation {fn.__qualname__} is not a module-level function of an"
                " importable module"
            )
        future: asyncio.Future[T] = self._running_loop().create_future()
        self._writer.submit((fn, args, kwargs), future)
        return await future

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop, usually without ``asyncio.get_running_loop()``, which
        costs a ``getpid`` system call per call on CPython 3.11 (about 2% of the event loop's
        time under load, one per write).

        The loop of the previous write is taken again if it was this thread's and is still
        running: one thread runs one loop at a time, so a running loop last seen on this
        thread is the one running here (a loop moved to another thread while this thread
        runs a second one would defeat that; asyncio has no such use).
        """
        ident = threading.get_ident()
        last = self._last_loop
        if last is not None and last[0] == ident and last[1].is_running():
            return last[1]
        loop = asyncio.get_running_loop()
        self._last_loop = (ident, loop)
        return loop

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

    async def close(self) -> None:
        """Finish queued writes, stop the writer process and the bulk thread, close the
        connections, release the owner lock (the writer releases its copy as it exits)."""
        if self._closed:
            return
        self._closed = True
        self._writer.leave(asyncio.get_running_loop())
        await asyncio.to_thread(self._writer.stop)
        await asyncio.wrap_future(self._bulk.submit(self._bulk_conn.close))
        self._bulk.shutdown(wait=True)
        with self._reader_busy:
            self._reader_conn.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the owner lock
            self._lock = None
