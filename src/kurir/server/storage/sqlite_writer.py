"""The SQLite writer process: group commit of the embedded engine's writes, in its own process.

This module owns what runs in the writer process and the bytes between it and the server. The
server (:class:`~kurir.server.storage.sqlite_db.Database`) starts it with :func:`command`, as
``python -c`` running :func:`main`: a fresh interpreter, started by ``fork`` + ``exec`` at once
(:mod:`subprocess`), so no thread or event loop of the server is ever copied into it, and
``multiprocessing`` (its main-module re-import, resource tracker and fork server) stays out of
the picture. Start-up is an interpreter and ``sqlite3``; the modules that define the write
operations load on the first batch that names them.

Why a process: the event loop and a writer *thread* share one GIL, so together they never use
more than one core (``docs/performance.md``, "The SQLite writer in its own process"). Here the
writer has a core and a GIL of its own; reads stay in the server (WAL lets them see every
commit of this process).

The channel is one ``AF_UNIX`` stream socket. Every message in either direction is a
:func:`frame`: a 4-byte big-endian length, then two pickles back to back: the operation ids,
then the calls (server to writer: plain ``(fn, args, kwargs)`` tuples, ``fn`` a module-level
function) or the outcomes (writer to server: ``(result, error)``). The ids come first so that a
payload that fails to unpickle still lets the other side answer or fail exactly those
operations. Both sides pickle every message, so its encoding is kept cheap on both: kurir's
records go as their class and field values, UUIDs as their integer and enum members by name
(:class:`_Reducers`), each found by one lookup in C per object that is not a plain container
or scalar, none at all for those.
Pickle is safe here: both ends are processes of the same server, started by it, over a
socketpair nobody else holds. The first message to the writer carries the database path and
the server's ``sys.path`` (so operations defined outside the package, as tests' are, load).

The writer reads whatever has arrived, up to :data:`MAX_BATCH` operations, runs them in one
transaction and COMMITs once (group commit, ``synchronous=FULL``), and only then sends their
outcomes: a server-side ``await`` returns after its change is on disk. An operation that raises
is isolated as before: the batch is rolled back and run again with each operation inside its
own SAVEPOINT (:func:`run_batch`). Exceptions go back pickled with their attributes; one that
does not survive the round trip is replaced by a :class:`StorageError` naming its type.

Its life is its socket: at end of file (the server closed it, or died, even by SIGKILL) it
finishes the operations it has read, closes the database and exits, so it never outlives its
server by more than one batch. It ignores SIGINT and SIGTERM, which a terminal or a service
manager sends to the whole process group: the server decides when it stops, and its
:meth:`~kurir.server.storage.sqlite_db.Database.close` first lets queued writes finish. It
inherits the server's owner lock (``kurir.db.lock``) and holds it until it exits, so no other
server opens the file while its last batch may still commit.

It knows nothing of accounts or mailboxes, and nothing of asyncio.
"""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import io
import logging
import operator
import pickle
import signal
import socket
import sqlite3
import struct
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from kurir.server.storage.errors import StorageError

__all__ = [
    "CHECKPOINT_PAGES",
    "IDLE_CHECKPOINT_COMMITS",
    "MAX_BATCH",
    "Call",
    "Outcome",
    "Reader",
    "command",
    "connect",
    "decode",
    "frame",
    "main",
    "run_batch",
    "transferable",
]

_log = logging.getLogger(__name__)
MAX_BATCH: Final = 256
"""Operations per transaction at most (the rest wait for the next one)."""
CHECKPOINT_PAGES: Final = 10_000
"""WAL pages (4 KiB each) after which a commit checkpoints (SQLite's default is 1,000). Pages
written again between two checkpoints are copied once, and the same few pages (the devices',
the tails of the indexes) change in almost every batch: checkpointing a tenth as often copies
far fewer pages per message. The WAL file grows to about 40 MiB before it is reused."""
IDLE_CHECKPOINT_COMMITS: Final = 50
"""Commits after which the writer, when it next finds nothing to do, checkpoints the WAL
itself (``PASSIVE``: it copies what it can and waits for nobody).

SQLite's own checkpoint (every :data:`CHECKPOINT_PAGES`) runs inside the ``COMMIT`` that
crosses the mark: that batch's callers wait for it (4 to 8 ms here), and so do the operations
that arrive meanwhile, so that at 5,000 msgs/s each one showed as a cluster of slow messages,
most of the slowest 1% (docs/performance.md, "Session 5"). Checkpointing in the gaps between
batches, after the outcomes have gone out, copies fewer pages at a time and keeps them off
the callers' path; under a load that leaves no gaps, SQLite's own takes over as before."""
_HEADER: Final = struct.Struct("!I")
_CHUNK: Final = 1 << 16
"""Bytes asked of one ``recv``: Python allocates that much per call, found or not (a MiB cost
about 10 us a call here, 64 KiB about 1); a longer message takes several."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection of the engine: autocommit, WAL (checkpointed every
    :data:`CHECKPOINT_PAGES`), ``synchronous=FULL``, foreign keys."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
    return conn


Call = tuple[Callable[..., object], tuple[object, ...], dict[str, Any]]
"""One write operation as it crosses to the writer: ``(fn, args, kwargs)``, run as
``fn(conn, *args, **kwargs)``.

``fn`` must be a module-level function (pickled by name) and its arguments picklable. The
precise signature is checked where the call is made (:meth:`Database.write`); here, past that
seam, it is only carried. A plain tuple: nothing to construct on either side.
"""


Outcome = tuple[object, BaseException | None]
"""An operation's result, or the exception it raised (then the result is ``None``)."""


_Reduce = Callable[[Any], Any]
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown
_set = object.__setattr__


def _uuid(value: int) -> uuid.UUID:
    """A :class:`uuid.UUID` back from its integer (what ``UUID.__setstate__`` does, without
    the state dictionary)."""
    made = object.__new__(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _SAFE_UNKNOWN)
    return made


def _reduce_uuid(value: uuid.UUID) -> Any:
    if value.is_safe is not _SAFE_UNKNOWN:
        return value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return (_uuid, (value.int,))


def _record_reducer(cls: type) -> _Reduce | None:
    """For one of kurir's dataclasses whose fields are all positional ``__init__`` arguments:
    ``obj -> (cls, field values)``, the values in order; else ``None``."""
    if not (dataclasses.is_dataclass(cls) and cls.__module__.startswith("kurir.")):
        return None
    fields = dataclasses.fields(cls)
    if not fields or not all(f.init and not f.kw_only for f in fields):
        return None
    names = [f.name for f in fields]
    if len(names) == 1:
        name = names[0]
        return lambda obj: (cls, (getattr(obj, name),))
    values = operator.attrgetter(*names)
    return lambda obj: (cls, values(obj))


def _enum_reducer(cls: type) -> _Reduce | None:
    """For an enum importable by its qualified name: its members by name (a global, looked up
    in C when loaded, instead of a call of the enum with the value); else ``None``."""
    if not issubclass(cls, enum.Enum) or issubclass(cls, enum.Flag) or "<" in cls.__qualname__:
        return None  # a combination of flags has no name of its own
    prefix = cls.__qualname__ + "."
    return lambda member: prefix + member.name


def _by_name(cls: type) -> str:
    """A class is pickled by its qualified name (as pickle does for one not in the table)."""
    return cls.__qualname__


_DEFAULT: Final[_Reduce] = operator.methodcaller("__reduce_ex__", pickle.HIGHEST_PROTOCOL)
"""What pickle does for a type without a reducer (in C: no Python frame per object)."""


class _Reducers(dict[type, _Reduce]):
    """The picklers' dispatch table: a reducer per type, chosen on the type's first object.

    Pickle consults it (in C) for objects that are not of a type it writes itself (``None``,
    numbers, strings, bytes, tuples, lists, dicts, functions...): kurir's records go as
    ``(class, field values)`` (the standard form of a slotted dataclass goes through
    ``dataclasses.fields`` in Python on both sides, several times slower per record, and a
    mailbox batch carries hundreds), UUIDs as their integer, enum members by name; classes and
    any other type as pickle would (by name; ``copyreg``'s entries, else ``__reduce_ex__``).
    """

    def __missing__(self, cls: type) -> _Reduce:
        found = copyreg.dispatch_table.get(cls)
        if found is None:
            if cls is uuid.UUID:
                found = _reduce_uuid
            elif issubclass(cls, type):  # a class of a metaclass (an enum, a protocol)
                found = _by_name
            else:
                found = _record_reducer(cls) or _enum_reducer(cls) or _DEFAULT
        self[cls] = found
        return found


_REDUCERS: Final = _Reducers()


class _Pickler(pickle.Pickler):
    """A pickler with :data:`_REDUCERS` as its dispatch table."""

    dispatch_table = _REDUCERS


def _dumps(value: object) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def frame(ids: list[int], items: list[Any]) -> bytes:
    """One message: the operation ids and their calls or outcomes, length-prefixed.

    Raises:
        pickle.PicklingError: An item cannot be pickled (TypeError, AttributeError too).
    """
    head = pickle.dumps(ids, pickle.HIGHEST_PROTOCOL)
    body = _dumps(items)
    return _HEADER.pack(len(head) + len(body)) + head + body


def decode(payload: bytes) -> tuple[list[int], list[Any] | Exception]:
    """The ids of one message's payload, and its items or why they did not unpickle."""
    stream = io.BytesIO(payload)
    ids: list[int] = pickle.load(stream)  # noqa: S301 - our own process wrote it
    try:
        items: list[Any] = pickle.load(stream)  # noqa: S301 - our own process wrote it
    except Exception as exc:  # a function the other side cannot import, a broken value
        return ids, exc
    return ids, items


class Reader:
    """Splits a stream socket's bytes into message payloads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self.eof = False

    def read(self, *, block: bool) -> list[bytes]:
        """Every complete payload received so far, after one ``recv`` (waiting for it if
        ``block``; sets :attr:`eof` when the other side has closed)."""
        try:
            chunk = self._sock.recv(_CHUNK, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            chunk = None
        except OSError:
            chunk = b""
        if chunk == b"":
            self.eof = True
        elif chunk is not None:
            self._buffer += chunk
        return self._payloads()

    def _payloads(self) -> list[bytes]:
        out: list[bytes] = []
        buffer, start = self._buffer, 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if len(buffer) < end:
                break
            out.append(bytes(buffer[start + _HEADER.size : end]))
            start = end
        del buffer[:start]
        return out


def transferable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling as the same type, else a :class:`StorageError`
    naming it (an exception whose ``__init__`` does not take its ``args`` back)."""
    try:
        again = pickle.loads(pickle.dumps(error, pickle.HIGHEST_PROTOCOL))  # noqa: S301
        if type(again) is type(error):
            return error
    except Exception:  # noqa: S110 - replaced below
        pass
    return StorageError(f"{type(error).__name__} raised in the writer")


def _failed(conn: sqlite3.Connection, batch: list[Call], exc: Exception) -> list[Outcome]:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    _log.error("storage transaction failed: %s", type(exc).__name__)
    return [(None, StorageError("transaction failed")) for _ in batch]


def run_batch(conn: sqlite3.Connection, batch: list[Call]) -> list[Outcome]:
    """Run ``batch`` in one transaction; return each operation's result or error.

    Optimistic: the operations run back to back without savepoints. If one raises, the whole
    transaction is rolled back and the batch runs again through :func:`_run_isolated`, which
    gives every operation its own savepoint and reports the first run's error for the failed
    one (not running it again): the operations before it see the same state in both runs, so
    the outcome is the one per-operation savepoints give. An operation may thus run twice,
    its first run rolled back, and must change nothing outside the connection (as on
    PostgreSQL, where a transaction may be retried).
    """
    outcomes: list[Outcome] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for index, call in enumerate(batch):
            try:
                fn, args, kwargs = call
                result = fn(conn, *args, **kwargs)
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if len(batch) == 1:  # nothing else to keep
                    return [(None, exc)]
                return _run_isolated(conn, batch, failed=index, error=exc)
            outcomes.append((result, None))
        conn.execute("COMMIT")
    except Exception as exc:
        return _failed(conn, batch, exc)
    return outcomes


def _run_isolated(
    conn: sqlite3.Connection, batch: list[Call], *, failed: int, error: Exception
) -> list[Outcome]:
    """Run ``batch`` in one transaction, each operation inside its own SAVEPOINT.

    ``batch[failed]`` already raised ``error`` against the state the operations before it
    leave: it is not run again, its error is its outcome.
    """
    outcomes: list[Outcome] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for index, call in enumerate(batch):
            if index == failed:
                outcomes.append((None, error))
                continue
            conn.execute("SAVEPOINT op")
            try:
                fn, args, kwargs = call
                result = fn(conn, *args, **kwargs)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((None, exc))
            else:
                conn.execute("RELEASE op")
                outcomes.append((result, None))
        conn.execute("COMMIT")
    except Exception as exc:
        return _failed(conn, batch, exc)
    return outcomes


def _answer(ids: list[int], outcomes: list[Outcome]) -> bytes:
    """The outcomes' message; an error or result that cannot cross is replaced."""
    outcomes = [(r, None if e is None else transferable(e)) for r, e in outcomes]
    try:
        return frame(ids, outcomes)
    except Exception:
        _log.exception("a write operation's result cannot be sent back")
        safe: list[Outcome] = []
        for result, error in outcomes:
            try:
                pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
            except Exception:
                safe.append((None, StorageError("result cannot be sent back")))
            else:
                safe.append((result, error))
        return frame(ids, safe)


def _serve(sock: socket.socket) -> None:
    reader = Reader(sock)
    hello: list[bytes] = []
    while not hello and not reader.eof:
        hello = reader.read(block=True)
    if not hello:
        return
    _, start = decode(hello.pop(0))
    if isinstance(start, Exception):
        raise start
    path, sys_path = start
    sys.path[:] = [*sys_path, *(p for p in sys.path if p not in sys_path)]
    conn = connect(Path(path))
    waiting: list[tuple[int, Call]] = []
    pending = hello  # payloads that came with the first message
    commits = 0  # since the last checkpoint of ours
    try:
        while True:
            if not pending and not waiting and commits >= IDLE_CHECKPOINT_COMMITS:
                pending = reader.read(block=False)
                if not pending and not reader.eof:  # idle: nobody waits for this
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    commits = 0
            while not pending and not waiting and not reader.eof:
                pending = reader.read(block=True)
            if not reader.eof:  # whatever else has arrived joins this batch
                pending += reader.read(block=False)
            for payload in pending:
                ids, calls = decode(payload)
                if isinstance(calls, Exception):
                    _log.error("write operations could not be loaded: %r", calls)
                    error = StorageError(f"operation could not be loaded: {calls!r}")
                    sock.sendall(frame(ids, [(None, error)] * len(ids)))
                    continue
                waiting.extend(zip(ids, calls, strict=True))
            pending = []
            if not waiting:
                if reader.eof:
                    return
                continue
            batch, waiting = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
            calls = [call for _, call in batch]
            try:
                outcomes = run_batch(conn, calls)
            except Exception:  # never leave a caller without an answer
                _log.exception("storage writer failed")
                outcomes = [(None, StorageError("transaction failed"))] * len(calls)
            sock.sendall(_answer([i for i, _ in batch], outcomes))
            commits += 1
    finally:
        conn.close()


def command(sock_fd: int) -> list[str]:
    """The writer process's command line, its end of the socket being ``sock_fd``."""
    return [
        sys.executable,
        "-c",
        "import sys; from kurir.server.storage.sqlite_writer import main; sys.exit(main(sys.argv))",
        str(sock_fd),
    ]


def main(argv: list[str]) -> int:
    """The writer process: serve the socket whose descriptor is ``argv[1]`` until it closes.

    Returns:
        The exit status: 0 after end of file, 1 if the server went away mid-answer.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s kurir-sqlite-writer: %(message)s"
    )
    sock = socket.socket(fileno=int(argv[1]))
    try:
        _serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        return 1  # the server is gone: nobody waits for these outcomes
    finally:
        sock.close()  # the inherited owner lock goes when this process exits
    return 0
