"""The PostgreSQL mailboxes, with group commit on the hot path.

This module owns the mailbox SQL of the PostgreSQL engine. ``enqueue`` and ``acknowledge``
(the two calls every message makes) do not each take a transaction: they are queued, and a
small number of writer tasks take every queued call at once and apply the whole batch in ONE
transaction with a fixed number of statements whatever the batch size (one multi-row DELETE
for the acknowledgements, one lock of the recipient devices, one duplicate lookup, one count,
then pipelined ``executemany`` writes). Callers are answered only after COMMIT, so an answered
call is durable; each call still succeeds or fails as a whole (the checks run in Python on
what the batch read, so a refused call writes nothing and does not disturb the others).

Sequence numbers: each device row carries ``last_seq``; the batch locks the rows of exactly
the devices it writes to (``FOR NO KEY UPDATE``, in key order so concurrent batches on this or
other nodes cannot deadlock on them) and raises them in the same transaction. There is no
global counter: two batches conflict only when they write to the same device, and a rolled
back batch leaves no gap (a PostgreSQL sequence per device would, and millions of sequences do
not shard).

Every statement names rows by (account_id, device_id) of the row's owner, the distribution
column on Citus (docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kurir.server.storage.errors import MailboxFull, RequestRefused, UnknownDevice
from kurir.server.storage.postgres_batch import GroupCommit
from kurir.server.storage.postgres_db import Conn, PgDatabase
from kurir.server.storage.postgres_metadata import count_sends
from kurir.server.storage.records import (
    RECEIPT_TYPE,
    Enqueued,
    OutgoingEnvelope,
    SendCount,
    StoredEnvelope,
    receipt_dedupe_key,
)
from kurir.server.types import AccountId, DeviceId, DeviceRef

__all__ = ["PgMailboxes", "Resolve"]

_Key = tuple[DeviceRef, bytes]


Resolve = Callable[[Conn], Awaitable[list[OutgoingEnvelope]]]
"""Finds, inside the batch's transaction, the envelopes of an enqueue (e.g. a group's member
devices, under a lock that keeps the membership until the commit); may raise
:class:`~kurir.server.storage.errors.RequestRefused` to refuse just that call."""


@dataclass(eq=False)
class _Enqueue:
    envelopes: Sequence[OutgoingEnvelope]
    now: int
    expires_at: int
    cap: int
    resolve: Resolve | None = None
    count: SendCount | None = None


@dataclass(eq=False)
class _Ack:
    device: DeviceRef
    seqs: list[int]
    now: int
    expires_at: int
    receipt_source_address: str | None


_Op = _Enqueue | _Ack


@dataclass(eq=False)
class _Request:
    """Envelopes to enqueue for one caller: a client's enqueue (``strict``: an unknown device
    refuses the call) or the receipts of an acknowledgement (gone senders are skipped)."""

    envelopes: list[OutgoingEnvelope]
    now: int
    expires_at: int
    cap: int | None
    strict: bool


@dataclass
class _Outcome:
    woken: Enqueued = field(default_factory=Enqueued)
    error: Exception | None = None


def _ref(env: OutgoingEnvelope) -> DeviceRef:
    return DeviceRef(env.account_id, env.device_id)


def _envelope(row: Any) -> StoredEnvelope:
    return StoredEnvelope(
        int(row["seq"]),
        int(row["type"]),
        None if row["source_account"] is None else AccountId(row["source_account"]),
        None if row["source_device"] is None else DeviceId(int(row["source_device"])),
        row["source_address"],
        bytes(row["message_id"]),
        int(row["client_timestamp"]),
        int(row["server_timestamp"]),
        bytes(row["body"]),
    )


async def _delete_acknowledged(conn: Conn, acks: list[_Ack]) -> list[_Request]:
    """Delete the acknowledged envelopes of every ack; record them as delivered; return the
    receipts each ack owes (one request per ack, in the ack's seq order)."""
    triples = [(op.device, seq) for op in acks for seq in op.seqs]
    if not triples:
        return [_Request([], op.now, op.expires_at, None, strict=False) for op in acks]
    rows = await conn.fetch(
        "DELETE FROM envelopes e"
        " USING unnest($1::uuid[], $2::integer[], $3::bigint[]) AS a (account_id, device_id, seq)"
        " WHERE e.account_id = a.account_id AND e.device_id = a.device_id AND e.seq = a.seq"
        " RETURNING e.account_id, e.device_id, e.seq, e.dedupe_key, e.expires_at, e.type,"
        " e.source_account, e.source_device, e.message_id, e.client_timestamp",
        [ref.account_id for ref, _ in triples],
        [ref.device_id for ref, _ in triples],
        [seq for _, seq in triples],
    )
    deleted = {
        (DeviceRef(AccountId(r["account_id"]), DeviceId(int(r["device_id"]))), int(r["seq"])): r
        for r in rows
    }
    if not deleted:
        return [_Request([], op.now, op.expires_at, None, strict=False) for op in acks]
    await conn.executemany(
        "INSERT INTO delivered (account_id, device_id, dedupe_key, expires_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, device_id, dedupe_key)"
        " DO UPDATE SET expires_at = EXCLUDED.expires_at",
        [
            (ref.account_id, ref.device_id, r["dedupe_key"], r["expires_at"])
            for (ref, _), r in deleted.items()
        ],
    )
    requests: list[_Request] = []
    for op in acks:
        receipts: list[OutgoingEnvelope] = []
        for seq in op.seqs:
            row = deleted.pop((op.device, seq), None)
            if row is None:
                continue
            src, src_dev = row["source_account"], row["source_device"]
            if src is None or src_dev is None or int(row["type"]) == RECEIPT_TYPE:
                continue
            message_id = bytes(row["message_id"])
            receipts.append(
                OutgoingEnvelope(
                    AccountId(src),
                    DeviceId(int(src_dev)),
                    receipt_dedupe_key(message_id, op.device.account_id.bytes, op.device.device_id),
                    RECEIPT_TYPE,
                    op.device.account_id,
                    op.device.device_id,
                    op.receipt_source_address,
                    message_id,
                    int(row["client_timestamp"]),
                    b"",
                )
            )
        requests.append(_Request(receipts, op.now, op.expires_at, None, strict=False))
    return requests


class _MailboxState:
    """What one batch read about the devices it writes to, advanced request by request."""

    def __init__(self) -> None:
        self.last_seq: dict[DeviceRef, int] = {}
        self.count: dict[DeviceRef, int] = {}
        self.queued: set[_Key] = set()
        self.delivered: dict[_Key, int] = {}
        self.raised: dict[DeviceRef, int] = {}
        self.rows: list[tuple[object, ...]] = []

    async def load(self, conn: Conn, requests: list[_Request]) -> None:
        refs = sorted({_ref(e) for r in requests for e in r.envelopes})
        if not refs:
            return
        locked = await conn.fetch(
            "SELECT account_id, device_id, last_seq FROM devices"
            " WHERE (account_id, device_id) IN"
            " (SELECT * FROM unnest($1::uuid[], $2::integer[]))"
            " ORDER BY account_id, device_id FOR NO KEY UPDATE",
            [r.account_id for r in refs],
            [r.device_id for r in refs],
        )
        for row in locked:
            ref = DeviceRef(AccountId(row["account_id"]), DeviceId(int(row["device_id"])))
            self.last_seq[ref] = int(row["last_seq"])
        keys = sorted({(_ref(e), e.dedupe_key) for r in requests for e in r.envelopes})
        args = (
            [k[0].account_id for k in keys],
            [k[0].device_id for k in keys],
            [k[1] for k in keys],
        )
        for row in await conn.fetch(
            "WITH k AS (SELECT * FROM unnest($1::uuid[], $2::integer[], $3::bytea[])"
            " AS k (account_id, device_id, dedupe_key))"
            " SELECT e.account_id, e.device_id, e.dedupe_key, NULL::bigint AS expires_at"
            " FROM envelopes e JOIN k USING (account_id, device_id, dedupe_key)"
            " UNION ALL SELECT d.account_id, d.device_id, d.dedupe_key, d.expires_at"
            " FROM delivered d JOIN k USING (account_id, device_id, dedupe_key)",
            *args,
        ):
            key = (
                DeviceRef(AccountId(row["account_id"]), DeviceId(int(row["device_id"]))),
                bytes(row["dedupe_key"]),
            )
            if row["expires_at"] is None:
                self.queued.add(key)
            else:
                self.delivered[key] = int(row["expires_at"])
        capped = sorted({_ref(e) for r in requests if r.cap is not None for e in r.envelopes})
        if capped:
            for row in await conn.fetch(
                "SELECT account_id, device_id, COUNT(*) AS n FROM envelopes"
                " WHERE (account_id, device_id) IN"
                " (SELECT * FROM unnest($1::uuid[], $2::integer[]))"
                " GROUP BY account_id, device_id",
                [r.account_id for r in capped],
                [r.device_id for r in capped],
            ):
                ref = DeviceRef(AccountId(row["account_id"]), DeviceId(int(row["device_id"])))
                self.count[ref] = int(row["n"])

    def admit(self, request: _Request) -> _Outcome:
        """Decide one request against the state; on success, stage its rows."""
        if request.strict and any(_ref(e) not in self.last_seq for e in request.envelopes):
            return _Outcome(error=UnknownDevice("no such recipient device"))
        seen: set[_Key] = set()
        added: dict[DeviceRef, int] = {}
        full: list[DeviceRef] = []
        todo: list[OutgoingEnvelope] = []
        for env in request.envelopes:
            ref = _ref(env)
            key = (ref, env.dedupe_key)
            if ref not in self.last_seq or key in seen or key in self.queued:
                continue
            if self.delivered.get(key, request.now) > request.now:
                continue
            if request.cap is not None and (
                self.count.get(ref, 0) + added.get(ref, 0) >= request.cap
            ):
                if ref not in full:
                    full.append(ref)
                continue
            seen.add(key)
            added[ref] = added.get(ref, 0) + 1
            todo.append(env)
        if full:
            return _Outcome(error=MailboxFull(full))
        queued: dict[DeviceRef, list[StoredEnvelope]] = {}
        for env in todo:
            ref = _ref(env)
            self.queued.add((ref, env.dedupe_key))
            self.count[ref] = self.count.get(ref, 0) + 1
            seq = self.last_seq[ref] + 1
            self.last_seq[ref] = self.raised[ref] = seq
            self.rows.append(
                (
                    env.account_id,
                    env.device_id,
                    seq,
                    env.dedupe_key,
                    env.type,
                    env.source,
                    env.source_device,
                    env.source_address,
                    env.message_id,
                    env.timestamp,
                    request.now,
                    request.expires_at,
                    env.body,
                )
            )
            queued.setdefault(ref, []).append(
                StoredEnvelope(
                    seq,
                    env.type,
                    env.source,
                    env.source_device,
                    env.source_address,
                    env.message_id,
                    env.timestamp,
                    request.now,
                    env.body,
                )
            )
        return _Outcome(Enqueued(queued, queued))

    async def write(self, conn: Conn) -> None:
        if not self.rows:
            return
        await conn.executemany(
            "UPDATE devices SET last_seq = $3 WHERE account_id = $1 AND device_id = $2",
            [(ref.account_id, ref.device_id, seq) for ref, seq in sorted(self.raised.items())],
        )
        await conn.executemany(
            "INSERT INTO envelopes (account_id, device_id, seq, dedupe_key, type,"
            " source_account, source_device, source_address, message_id, client_timestamp,"
            " server_timestamp, expires_at, body)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            self.rows,
        )


async def _resolve(conn: Conn, op: _Enqueue) -> _Request | _Outcome:
    if op.resolve is None:
        return _Request(list(op.envelopes), op.now, op.expires_at, op.cap, strict=True)
    try:
        found = await op.resolve(conn)
    except RequestRefused as exc:
        return _Outcome(error=exc)
    return _Request(found, op.now, op.expires_at, op.cap, strict=True)


async def _apply_batch(conn: Conn, batch: Sequence[_Op]) -> list[Enqueued | Exception]:
    """The whole batch, in one transaction: acknowledgements first, then every enqueue."""
    acks = [op for op in batch if isinstance(op, _Ack)]
    receipts = dict(zip(acks, await _delete_acknowledged(conn, acks), strict=True))
    requests: list[_Request | _Outcome] = []
    for op in batch:
        match op:
            case _Ack():
                requests.append(receipts[op])
            case _Enqueue():
                requests.append(await _resolve(conn, op))
    state = _MailboxState()
    await state.load(conn, [r for r in requests if isinstance(r, _Request)])
    outcomes = [state.admit(r) if isinstance(r, _Request) else r for r in requests]
    await state.write(conn)
    await count_sends(
        conn,
        [
            (op.count, op.now)
            for op, o in zip(batch, outcomes, strict=True)
            if isinstance(op, _Enqueue) and op.count is not None and o.error is None and o.woken
        ],
    )
    return [o.woken if o.error is None else o.error for o in outcomes]


class PgMailboxes:
    """The :class:`~kurir.server.storage.protocols.MailboxStore` on PostgreSQL."""

    def __init__(self, db: PgDatabase, *, writers: int = 2) -> None:
        self._db = db
        self._commit: GroupCommit[_Op, Enqueued] = GroupCommit(
            db, _apply_batch, writers=writers, name="mailbox-writer"
        )

    @property
    def batches(self) -> int:
        """How many group-commit transactions have committed."""
        return self._commit.batches

    async def enqueue(
        self,
        envelopes: Sequence[OutgoingEnvelope],
        *,
        now: int,
        expires_at: int,
        cap: int,
        count: SendCount | None = None,
    ) -> Enqueued:
        """See :meth:`~kurir.server.storage.protocols.MailboxStore.enqueue`."""
        if not envelopes:
            return Enqueued()
        return await self._commit.submit(_Enqueue(envelopes, now, expires_at, cap, None, count))

    async def enqueue_resolved(
        self, resolve: Resolve, *, now: int, expires_at: int, cap: int
    ) -> Enqueued:
        """Like :meth:`enqueue`, with the envelopes found by ``resolve`` inside the same
        (group-committed) transaction, so what decides the recipients and the enqueue are one
        atomic step.

        Raises:
            RequestRefused: Whatever ``resolve`` refused with, or as :meth:`enqueue`.
        """
        return await self._commit.submit(_Enqueue((), now, expires_at, cap, resolve))

    async def acknowledge(
        self,
        account_id: AccountId,
        device_id: DeviceId,
        seqs: Sequence[int],
        *,
        now: int,
        expires_at: int,
        receipt_source_address: str | None,
    ) -> Enqueued:
        """See :meth:`~kurir.server.storage.protocols.MailboxStore.acknowledge`."""
        unique = list(dict.fromkeys(seqs))
        if not unique:
            return Enqueued()
        op = _Ack(DeviceRef(account_id, device_id), unique, now, expires_at, receipt_source_address)
        return await self._commit.submit(op)

    async def fetch(
        self, account_id: AccountId, device_id: DeviceId, *, after_seq: int, limit: int, now: int
    ) -> list[StoredEnvelope]:
        """See :meth:`~kurir.server.storage.protocols.MailboxStore.fetch`."""

        async def op(conn: Conn) -> list[StoredEnvelope]:
            rows = await conn.fetch(
                "SELECT seq, type, source_account, source_device, source_address, message_id,"
                " client_timestamp, server_timestamp, body FROM envelopes"
                " WHERE account_id = $1 AND device_id = $2 AND seq > $3 AND expires_at > $4"
                " ORDER BY seq LIMIT $5",
                account_id,
                device_id,
                after_seq,
                now,
                limit,
            )
            return [_envelope(r) for r in rows]

        return await self._db.read(op)

    async def last_seq(self, account_id: AccountId, device_id: DeviceId) -> int:
        """See :meth:`~kurir.server.storage.protocols.MailboxStore.last_seq`."""

        async def op(conn: Conn) -> int:
            value = await conn.fetchval(
                "SELECT last_seq FROM devices WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return 0 if value is None else int(value)

        return await self._db.read(op)

    async def expire(self, now: int) -> int:
        """See :meth:`~kurir.server.storage.protocols.MailboxStore.expire`."""

        async def op(conn: Conn) -> int:
            # lock the affected devices in key order first (as the batches do), then delete
            await conn.execute(
                "SELECT 1 FROM devices d WHERE EXISTS (SELECT 1 FROM envelopes e"
                " WHERE e.account_id = d.account_id AND e.device_id = d.device_id"
                " AND e.expires_at <= $1)"
                " ORDER BY d.account_id, d.device_id FOR NO KEY UPDATE",
                now,
            )
            deleted = await conn.fetchval(
                "WITH gone AS (DELETE FROM envelopes WHERE expires_at <= $1"
                " RETURNING account_id, device_id),"
                " per_device AS (SELECT account_id, device_id, COUNT(*) AS n FROM gone"
                " GROUP BY account_id, device_id),"
                " counted AS (UPDATE devices d SET expired_count = d.expired_count + p.n"
                " FROM per_device p"
                " WHERE d.account_id = p.account_id AND d.device_id = p.device_id)"
                " SELECT COUNT(*) FROM gone",
                now,
            )
            await conn.execute("DELETE FROM delivered WHERE expires_at <= $1", now)
            return int(deleted)

        return await self._db.transaction(op)

    async def take_expired_count(self, account_id: AccountId, device_id: DeviceId) -> int:
        """See :meth:`~kurir.server.storage.protocols.MailboxStore.take_expired_count`."""

        async def op(conn: Conn) -> int:
            value = await conn.fetchval(
                "SELECT expired_count FROM devices WHERE account_id = $1 AND device_id = $2"
                " FOR NO KEY UPDATE",
                account_id,
                device_id,
            )
            if value is None or int(value) == 0:
                return 0
            await conn.execute(
                "UPDATE devices SET expired_count = 0 WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return int(value)

        return await self._db.transaction(op)

    async def close(self) -> None:
        """Let the writers finish every queued call."""
        await self._commit.close()
