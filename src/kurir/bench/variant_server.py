"""``kurir serve`` with named experimental changes, to measure a server change before making it.

This module owns the variants that ``kurir bench --server-variant NAME`` can measure against the
unchanged server. Each variant is what a proposed change to a shared server file would do,
applied here from the outside so that the server's own files stay untouched:

* ``uvloop``: run the server's event loop on uvloop. ``kurir serve`` calls
  ``uvicorn.Server.serve`` inside ``asyncio.run``, so uvicorn's own loop selection
  (``loop="auto"``) never happens and the server runs on the pure-Python selector loop. The
  proposed change is one line in ``kurir/cli/serve.py``: run ``_serve`` under
  ``uvloop.run`` when uvloop is installed (it is, through ``uvicorn[standard]``).

* ``batch-wakeups``: after a group commit, wake the event loop once for the whole batch
  (one ``call_soon_threadsafe`` that resolves every caller's future) instead of once per
  operation (``asyncio.wrap_future`` on a ``concurrent.futures.Future`` per write, each a write
  to the loop's self-pipe). The proposed change is in ``kurir/server/storage/sqlite_db.py``
  (``Database.write`` and ``_run_batch``); here the two are replaced from outside.
* ``tracemalloc``: not a proposed change but a measurement: trace Python allocations
  (:mod:`tracemalloc`, 8 frames) and write a snapshot to ``$KURIR_TRACEMALLOC_OUT.<n>`` on each
  SIGUSR1, so the idle run can say which code holds the memory of an idle connection.

Never used in production; nothing imports it but the bench.

Usage: ``python -m kurir.bench.variant_server --variant=uvloop [kurir serve options]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Final

from kurir.cli import serve

__all__ = ["TRACEMALLOC_ENV", "VARIANTS", "main"]

VARIANTS: Final = ("uvloop", "batch-wakeups", "tracemalloc")
TRACEMALLOC_ENV: Final = "KURIR_TRACEMALLOC_OUT"


def main(argv: list[str] | None = None) -> int:
    """Apply the variants, then run ``kurir serve`` with the remaining options."""
    parser = argparse.ArgumentParser(prog="kurir-variant-server")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=[])
    serve.add_parser(parser)
    args = parser.parse_args(argv)
    if "uvloop" in args.variant:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if "batch-wakeups" in args.variant:
        pass  # now built into sqlite_db.Database (one wake-up per batch): _batch_wakeups is moot
    if "tracemalloc" in args.variant:
        _trace_allocations(Path(os.environ[TRACEMALLOC_ENV]))
    return serve.run(args)


def _trace_allocations(output: Path) -> None:
    tracemalloc.start(8)
    taken = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        target = output.with_name(f"{output.name}.{taken}")
        tracemalloc.take_snapshot().dump(str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)  # the reader sees only whole files

    signal.signal(signal.SIGUSR1, dump)


class _Deferred:
    """Stands in for the writer's ``concurrent.futures.Future``; resolved by batch."""

    __slots__ = ("error", "finished", "future", "result")

    def __init__(self, future: asyncio.Future[object]) -> None:
        self.future = future
        self.result: object = None
        self.error: BaseException | None = None
        self.finished = False

    def set_running_or_notify_cancel(self) -> bool:
        return not self.future.cancelled()

    def done(self) -> bool:
        return self.finished

    def set_result(self, result: object) -> None:
        self.result, self.finished = result, True

    def set_exception(self, error: BaseException) -> None:
        self.error, self.finished = error, True


def _resolve(done: list[_Deferred]) -> None:
    for d in done:
        if d.future.done():
            continue
        if d.error is not None:
            d.future.set_exception(d.error)
        else:
            d.future.set_result(d.result)


def _batch_wakeups() -> None:
    from kurir.server.storage import sqlite_db
    from kurir.server.storage.errors import StorageError

    original = sqlite_db.Database._run_batch
    loops: dict[int, asyncio.AbstractEventLoop] = {}

    async def write(self: Any, fn: Callable[[sqlite3.Connection], object]) -> object:
        if self._closed:
            raise StorageError("database is closed")
        loop = asyncio.get_running_loop()
        loops[id(loop)] = loop
        deferred = _Deferred(loop.create_future())
        self._queue.put(sqlite_db._Op(fn, deferred))  # type: ignore[arg-type]
        return await deferred.future

    def run_batch(conn: sqlite3.Connection, batch: list[Any]) -> None:
        try:
            original(conn, batch)
        finally:
            done = [op.future for op in batch if isinstance(op.future, _Deferred)]
            for loop in loops.values():
                mine = [d for d in done if d.future.get_loop() is loop]
                if mine:
                    loop.call_soon_threadsafe(_resolve, mine)

    sqlite_db.Database.write = write  # type: ignore[method-assign,assignment]
    sqlite_db.Database._run_batch = staticmethod(run_batch)  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    sys.exit(main())
