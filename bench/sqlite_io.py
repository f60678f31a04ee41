"""SQLite engine I/O: what a read and a write operation cost in ``kurir.server.storage.sqlite_db``.

What it measures (docs/performance.md, "SQLite engine I/O"), on a fresh database file with the
engine's schema and a bench table of its own (``bench_rows``: integer key, a short text, a
200-byte blob, 10,000 rows):

* **point read**: one ``SELECT`` by primary key returning one row, through
  :meth:`Database.read` (synchronous, on the event loop's thread) and through
  :meth:`Database.read_bulk` (a hop to the bulk-reader thread and back, which is how every read
  ran before: ``ThreadPoolExecutor(1)`` + ``asyncio.wrap_future``); one at a time, and 100
  concurrent (``asyncio.gather``) as when many connections are woken at once;
* **range read**: 100 rows (what a mailbox fetch of ``_FETCH_BATCH`` envelopes returns), both
  ways, with the SQLite instructions it runs (to set ``ON_LOOP_VM_STEPS``);
* **instructions per millisecond**: how many SQLite VM instructions a scan runs per ms, so the
  on-loop bound can be read as time;
* **writer batch**: CPU per operation of a batch of 64 small write operations (an insert and an
  update each), run as the writer process runs it (``sqlite_writer.run_batch``, here in this
  process) without savepoints and, for comparison, with a
  SAVEPOINT/RELEASE around each operation; on a connection with ``synchronous=OFF`` so that
  the fsync (unchanged by either) is not in the figure;
* **pragmas** (``--pragmas``): the point and range reads on plain connections with
  ``mmap_size``, ``cache_size`` and ``temp_store`` changed, while a writer thread commits.

    .venv/bin/python bench/sqlite_io.py
    .venv/bin/python bench/sqlite_io.py --iterations 20000 --pragmas
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kurir.server.storage.sqlite_db import ON_LOOP_VM_STEPS, Database
from kurir.server.storage.sqlite_writer import Call, _run_isolated, run_batch

_ROWS = 10_000
_BLOB = os.urandom(200)


def _seed(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_rows (k INTEGER PRIMARY KEY, a TEXT NOT NULL,"
        " b BLOB NOT NULL, n INTEGER NOT NULL DEFAULT 0)"
    )
    conn.executemany(
        "INSERT INTO bench_rows (k, a, b) VALUES (?, ?, ?)",
        ((k, f"row-{k}", _BLOB) for k in range(_ROWS)),
    )


def _point(conn: sqlite3.Connection, k: int = 4242) -> tuple[object, ...] | None:
    row: tuple[object, ...] | None = conn.execute(
        "SELECT k, a, b, n FROM bench_rows WHERE k = ?", (k,)
    ).fetchone()
    return row


def _range(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = conn.execute(
        "SELECT k, a, b, n FROM bench_rows WHERE k > ? ORDER BY k LIMIT 100", (5000,)
    ).fetchall()
    return rows


async def _per_call_us(call: Callable[[], Awaitable[object]], iterations: int) -> float:
    for _ in range(min(iterations, 200)):
        await call()
    start = time.perf_counter()
    for _ in range(iterations):
        await call()
    return (time.perf_counter() - start) / iterations * 1e6


async def _gather_us(call: Callable[[], Awaitable[object]], rounds: int, width: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(call() for _ in range(width)))
    return (time.perf_counter() - start) / (rounds * width) * 1e6


def _vm_steps(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], object]) -> int:
    """Instructions ``fn``'s statements run, counted 100 at a time by a progress handler
    (so 0 means under 100)."""
    count = [0]

    def tick() -> int:
        count[0] += 100
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        fn(conn)
    finally:
        conn.set_progress_handler(None, 0)
    return count[0]


def _steps_per_ms(conn: sqlite3.Connection) -> float:
    def scan(c: sqlite3.Connection) -> None:
        c.execute("SELECT SUM(length(b)) FROM bench_rows").fetchone()

    steps = _vm_steps(conn, scan)
    start = time.perf_counter()
    for _ in range(20):
        scan(conn)
    return steps / ((time.perf_counter() - start) / 20 * 1e3)


def _write_op(conn: sqlite3.Connection, i: int) -> int:
    conn.execute("INSERT INTO bench_rows (a, b) VALUES (?, ?)", (f"w-{i}", _BLOB))
    conn.execute("UPDATE bench_rows SET n = n + 1 WHERE k = ?", (i % _ROWS,))
    return i


def _writer_us(path: Path, batches: int, size: int) -> tuple[float, float]:
    """CPU us per operation: optimistic batch, and every operation in its own savepoint."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=OFF")
    try:
        results: dict[str, float] = {}
        for _ in range(2):  # the second round is the one kept (warm caches)
            for name in ("optimistic", "savepoints"):
                total = 0.0
                for b in range(batches):
                    ops: list[Call] = [(_write_op, (b * size + i,), {}) for i in range(size)]
                    start = time.thread_time()
                    if name == "optimistic":
                        run_batch(conn, ops)
                    else:
                        _run_isolated(conn, ops, failed=-1, error=RuntimeError())
                    total += time.thread_time() - start
                results[name] = total / (batches * size) * 1e6
        return results["optimistic"], results["savepoints"]
    finally:
        conn.close()


def _pragma_reads(path: Path, iterations: int) -> list[tuple[str, float, float]]:
    """Point and range read us on plain connections under a committing writer, per pragma."""
    variants = {
        "defaults": [],
        "mmap_size=256 MiB": ["PRAGMA mmap_size=268435456"],
        "cache_size=-16384 (16 MiB)": ["PRAGMA cache_size=-16384"],
        "temp_store=MEMORY": ["PRAGMA temp_store=MEMORY"],
    }
    stop = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous=OFF")
        i = 0
        while not stop.is_set():
            conn.execute("UPDATE bench_rows SET n = n + 1 WHERE k = ?", (i % _ROWS,))
            i += 1
            time.sleep(0.0005)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    out: list[tuple[str, float, float]] = []
    try:
        for name, pragmas in variants.items():
            conn = sqlite3.connect(path, isolation_level=None)
            for pragma in pragmas:
                conn.execute(pragma)
            figures = []
            for fn in (_point, _range):
                rounds = []
                for _ in range(3):
                    n = iterations if fn is _point else iterations // 10
                    start = time.perf_counter()
                    for _ in range(n):
                        fn(conn)
                    rounds.append((time.perf_counter() - start) / n * 1e6)
                figures.append(min(rounds))
            conn.close()
            out.append((name, figures[0], figures[1]))
    finally:
        stop.set()
        thread.join()
    return out


async def _reads(db: Database, iterations: int) -> None:
    def best(values: list[float]) -> str:
        return f"{min(values):8.1f} us (median {statistics.median(values):.1f})"

    rows: list[tuple[str, list[float], list[float]]] = []
    for name, fn, n in (
        ("point read", _point, iterations),
        ("range read, 100 rows", _range, iterations // 10),
    ):
        on_loop, thread = [], []
        for _ in range(3):
            on_loop.append(await _per_call_us(lambda fn=fn: db.read(fn), n))
            thread.append(await _per_call_us(lambda fn=fn: db.read_bulk(fn), n))
        rows.append((name, on_loop, thread))
    for name, fn in (
        ("point read, 100 concurrent", _point),
        ("range read, 100 concurrent", _range),
    ):
        on_loop, thread = [], []
        for _ in range(3):
            on_loop.append(await _gather_us(lambda fn=fn: db.read(fn), 20, 100))
            thread.append(await _gather_us(lambda fn=fn: db.read_bulk(fn), 20, 100))
        rows.append((name, on_loop, thread))
    print(f"{'read':30} {'on the loop (read)':>34} {'via the thread (read_bulk)':>34}")
    for name, on_loop, thread in rows:
        print(f"{name:30} {best(on_loop):>34} {best(thread):>34}")


async def _main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        loop_name = f"uvloop {uvloop.__version__}"
    except ImportError:  # pragma: no cover - uvloop is a server dependency
        loop_name = "asyncio"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        db = Database.open(path)
        try:
            # seeded on a connection of this process: a write operation of ``db`` is sent to
            # its writer process by name, and this script's ``__main__`` cannot be imported there
            seed = sqlite3.connect(path, isolation_level=None)
            with seed:
                seed.execute("PRAGMA busy_timeout=5000")
                seed.execute("BEGIN IMMEDIATE")
                _seed(seed)
                seed.execute("COMMIT")
            seed.close()
            print(
                f"SQLite {sqlite3.sqlite_version}, event loop: {loop_name},"
                f" ON_LOOP_VM_STEPS {ON_LOOP_VM_STEPS}"
            )
            await _reads(db, args.iterations)
        finally:
            await db.close()
        probe = sqlite3.connect(path)
        print(f"range read, 100 rows: {_vm_steps(probe, _range)} SQLite instructions")
        point_steps = _vm_steps(probe, _point)
        print(f"point read: {point_steps or 'under 100'} SQLite instructions")
        print(f"SQLite instructions per ms (a scan): {_steps_per_ms(probe):,.0f}")
        probe.close()
        opt, sp = _writer_us(path, args.batches, 64)
        print(
            f"writer, batch of 64 (insert + update each), CPU per op: optimistic {opt:.1f} us,"
            f" with savepoints {sp:.1f} us"
        )
        if args.pragmas:
            print(f"{'pragma (reader connection)':30} {'point read us':>14} {'range read us':>14}")
            for name, point, rng in _pragma_reads(path, args.iterations):
                print(f"{name:30} {point:14.1f} {rng:14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000, help="point reads per round")
    parser.add_argument("--batches", type=int, default=50, help="writer batches of 64 per round")
    parser.add_argument("--pragmas", action="store_true", help="also compare reader pragmas")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_main(args))
    except ImportError:  # pragma: no cover
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
