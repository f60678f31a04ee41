"""Who reads the writer process's outcomes: the event loop that awaits them, or, while writes of
several loops are pending, the results thread; and every loop gets its own, whatever the order
in which loops come, stop, close or outlive the writer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kurir.server.storage.errors import StorageError
from kurir.server.storage.sqlite_db import Database
from server.storage.writer_ops import accounts, hold, insert

T = TypeVar("T")


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _storage_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("kurir-sqlite-"))


async def _write_elsewhere(db: Database, names: list[str], queued: threading.Event) -> list[object]:
    """On another loop: queue a write of each name, say so, and return their outcomes."""
    tasks = [asyncio.create_task(db.write(insert, n)) for n in names]
    await asyncio.sleep(0)  # every task has queued its write
    queued.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def _in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop in a thread of its own (closed when it returns)."""
    return await asyncio.to_thread(asyncio.run, coro)


@contextlib.asynccontextmanager
async def _held(db: Database, tmp_path: Path) -> AsyncIterator[asyncio.Task[str]]:
    """Hold the writer process inside a write (:func:`hold`) for the block; the write's task.

    The writer is released at the end of the block, or when the block fails (so a failing
    test ends instead of waiting for the writer forever)."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    held = asyncio.create_task(db.write(hold, str(gate)))
    release = await asyncio.to_thread(open, gate, "wb")  # the writer is inside ``hold``
    try:
        yield held
    finally:
        release.close()


async def test_a_single_loop_reads_its_outcomes_without_a_thread(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        names = [f"a{i:03d}" for i in range(300)]  # more than one batch
        assert await asyncio.gather(*(db.write(insert, n) for n in names)) == names
        assert await db.write(insert, "b") == "b"
        assert _storage_threads() == ["kurir-sqlite-send"]
    finally:
        await db.close()


async def test_writes_of_two_loops_pending_at_once_each_get_their_outcome(
    tmp_path: Path,
) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        async with _held(db, tmp_path) as held:
            queued = threading.Event()
            elsewhere = asyncio.create_task(_in_thread(_write_elsewhere(db, ["b", "c"], queued)))
            await asyncio.to_thread(queued.wait)  # the other loop's writes are pending too
            here = asyncio.create_task(db.write(insert, "a"))  # and ours, behind them
            await asyncio.sleep(0)
        async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
            assert await held == "held"
            assert await here == "a"
            assert await elsewhere == ["b", "c"]
        assert await db.write(insert, "d") == "d"  # this loop alone again: it reads again
        assert await db.read(accounts) == ["a", "b", "c", "d"]
    finally:
        await db.close()


async def test_the_next_loop_reads_after_the_reading_loop_closed(tmp_path: Path) -> None:
    before = _open_descriptors()
    db = await asyncio.to_thread(Database.open, tmp_path / "k.db")
    try:
        async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
            assert await _in_thread(db.write(insert, "a")) == "a"  # that loop read, and closed
            assert await db.write(insert, "b") == "b"
            assert await _in_thread(db.write(insert, "c")) == "c"
    finally:
        await db.close()
    assert _open_descriptors() == before


async def test_a_loop_that_is_not_running_strands_no_other_loops_writes(tmp_path: Path) -> None:
    before = _open_descriptors()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    runner = asyncio.Runner()  # its loop runs in the pool's thread, and only now and then
    here = asyncio.get_running_loop()

    def run(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return here.run_in_executor(pool, runner.run, coro)

    db = Database.open(tmp_path / "k.db")
    try:
        async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
            assert await run(db.write(insert, "a")) == "a"  # it reads; then it stops running
            assert await db.write(insert, "b") == "b"
            assert await run(db.write(insert, "c")) == "c"
            assert await db.write(insert, "d") == "d"
            assert await run(db.write(insert, "e")) == "e"  # it reads, and is not running ...
    finally:
        await db.close()  # ... while another loop closes the database
        # a loop closes the descriptor it watched when it next runs (here, as it closes)
        await here.run_in_executor(pool, runner.close)
        pool.shutdown()
    assert _open_descriptors() == before


async def test_a_dead_writer_fails_the_pending_writes_of_every_loop(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        async with _held(db, tmp_path) as held:
            queued = threading.Event()
            elsewhere = asyncio.create_task(_in_thread(_write_elsewhere(db, ["b"], queued)))
            await asyncio.to_thread(queued.wait)
            os.kill(db.writer_pid, signal.SIGKILL)
        async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
            with pytest.raises(StorageError):
                await held
            (outcome,) = await elsewhere
            assert isinstance(outcome, StorageError)
            with pytest.raises(StorageError):
                await _in_thread(db.write(insert, "c"))
    finally:
        await db.close()


async def test_a_writer_that_dies_while_the_loop_reads_fails_its_writes(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "k.db")
    try:
        assert await db.write(insert, "a") == "a"
        async with _held(db, tmp_path) as held:
            assert _storage_threads() == ["kurir-sqlite-send"]  # this loop reads the outcomes
            os.kill(db.writer_pid, signal.SIGKILL)
        async with asyncio.timeout(60):  # a bound for a broken build, not a timing assertion
            with pytest.raises(StorageError):
                await held
        with pytest.raises(StorageError):
            await db.write(insert, "b")
    finally:
        await db.close()
