"""Group commit for the PostgreSQL engine: many concurrent calls, one transaction.

This module owns :class:`GroupCommit`, the queue in front of a hot-path write. Callers submit
an item and wait; a few writer tasks each take everything queued (up to a batch limit) and
hand the whole batch to an ``apply`` function that runs in ONE transaction and returns one
outcome per item (a result, or the exception refusing just that item). Callers are answered
only after COMMIT, so an answered call is durable, while a burst of N calls costs a handful of
commits instead of N. It knows nothing of what the items mean.

If a batch fails as a whole (an unexpected database error), each of its items is run again
alone, so one bad item cannot fail its neighbours; deadlock and serialization aborts are
retried by :meth:`~kurir.server.storage.postgres_db.PgDatabase.transaction`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from kurir.server.storage.errors import StorageError
from kurir.server.storage.postgres_db import Conn, PgDatabase

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")
_log = logging.getLogger(__name__)
_MAX_BATCH: Final = 256


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R] = field(repr=False)


class GroupCommit(Generic[T, R]):
    """The queue of pending calls of one kind and the writer tasks that drain it in batches.

    Args:
        db: The database whose transactions the batches run in.
        apply: Applies a batch inside the transaction it is given; returns one outcome per
            item, in order: the item's result, or the exception refusing only that item.
        writers: How many batches may run at once (each holds one pooled connection).
        name: Names the writer tasks (for debugging).
    """

    def __init__(
        self,
        db: PgDatabase,
        apply: Callable[[Conn, Sequence[T]], Awaitable[list[R | Exception]]],
        *,
        writers: int,
        name: str,
    ) -> None:
        if writers < 1:
            raise ValueError("need at least one writer")
        self._db = db
        self._apply = apply
        self._writers = writers
        self._name = name
        self._pending: collections.deque[_Pending[T, R]] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._workers: list[asyncio.Task[None]] = []
        self.batches = 0
        """Committed batch transactions so far (for tests and metrics)."""

    async def submit(self, item: T) -> R:
        """Queue ``item``; return its outcome once its batch committed.

        Raises:
            StorageError: The engine is closed, or the item's transaction failed.
            Exception: Whatever ``apply`` refused this item with.
        """
        if self._closing:
            raise StorageError("database is closed")
        if not self._workers:  # started lazily, on the loop of the first call
            self._workers = [
                asyncio.create_task(self._work(), name=f"kurir-pg-{self._name}")
                for _ in range(self._writers)
            ]
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(item, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Finish every queued call, then stop the writers."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(*self._workers)

    async def _work(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch: list[_Pending[T, R]] = []
            while self._pending and len(batch) < _MAX_BATCH:
                pending = self._pending.popleft()
                # a caller that gave up before its batch started is skipped; once started,
                # its call runs to the commit even if the caller is cancelled meanwhile
                if not pending.future.done():
                    batch.append(pending)
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Pending[T, R]]) -> None:
        items = [p.item for p in batch]
        try:
            outcomes = await self._db.transaction(lambda conn: self._apply(conn, items))
            if len(outcomes) != len(batch):
                raise StorageError("a batch function returned the wrong number of outcomes")
        except Exception as exc:
            if len(batch) > 1:  # isolate the call that broke the batch: run each alone
                for pending in batch:
                    await self._run([pending])
                return
            _log.error("%s transaction failed: %s", self._name, type(exc).__name__)
            if not batch[0].future.done():
                batch[0].future.set_exception(StorageError("transaction failed"))
            return
        self.batches += 1
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
