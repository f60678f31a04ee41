"""The SQLite storage engine: the storage Protocols as explicit SQL.

This module owns the SQL of accounts, keys and mailboxes. Each Protocol method is one
operation on :class:`~kurir.server.storage.sqlite_db.Database` (one transaction, group
committed); reads go to the reader connection. The SQL stays portable to PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID

from kurir.server.storage.codes_sqlite import SqliteCodeStore
from kurir.server.storage.errors import (
    IdentityKeyChanged,
    KeysNotSet,
    MailboxFull,
    TooManyDevices,
    UnknownDevice,
)
from kurir.server.storage.groups_sqlite import SqliteGroupStore
from kurir.server.storage.metadata_records import ConversationState
from kurir.server.storage.metadata_sqlite import SqliteMetadataStore, record_send_in
from kurir.server.storage.protocols import Storage
from kurir.server.storage.records import (
    RECEIPT_TYPE,
    AccountRecord,
    DeviceKeys,
    DeviceRecord,
    Enqueued,
    KeyBundle,
    KeyCounts,
    KeyUpdate,
    NewDevice,
    OneTimeKey,
    OutgoingEnvelope,
    SendCount,
    SignedKey,
    StoredEnvelope,
    receipt_dedupe_key,
)
from kurir.server.storage.sqlite_cache import (
    CachedMetadataStore,
    ReadCache,
    WatchedDatabase,
    write_quiet,
)
from kurir.server.storage.sqlite_db import Database
from kurir.server.types import PRIMARY_DEVICE, AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

__all__ = ["SqliteEngine"]

_K = TypeVar("_K")
_V = TypeVar("_V")

_DEVICE_COLUMNS = "account_id, device_id, name, registration_id, salt, password_hash, created_at"
_ENVELOPE_COLUMNS = (
    "seq, type, source_account, source_device, source_address, message_id, "
    "client_timestamp, server_timestamp, body"
)

# schema 6 dropped the mailbox tables' foreign keys: a device's removal deletes its rows here
_DROP_DEVICE_MAILBOX = (
    "DELETE FROM envelopes WHERE account_id = ? AND device_id = ?",
    "DELETE FROM delivered WHERE account_id = ? AND device_id = ?",
)
_DROP_ACCOUNT_MAILBOXES = (
    "DELETE FROM envelopes WHERE account_id = ?",
    "DELETE FROM delivered WHERE account_id = ?",
)


def _aid(value: object) -> AccountId:
    return AccountId(UUID(str(value)))


_TEXT_CACHE_MAX: Final = 100_000
_texts: dict[int, str] = {}
_ids: dict[str, AccountId] = {}


def _text(account_id: UUID) -> str:
    """An account id as the mailbox tables store it (its canonical text).

    The message path formats the same few ids over and over, and ``str(UUID)`` runs in
    Python; here each id is formatted once and then found by its integer (a probe in C).
    The memo holds at most :data:`_TEXT_CACHE_MAX` ids (then it starts again): a pure
    function's results, nothing that could be stale.
    """
    text = _texts.get(account_id.int)
    return _remember(_texts, account_id.int, str(account_id)) if text is None else text


def _stored_aid(text: str) -> AccountId:
    """:func:`_aid` of an account id read from the mailbox tables, parsed once per id (the
    inverse of :func:`_text`, memoised the same way)."""
    found = _ids.get(text)
    return _remember(_ids, text, _aid(text)) if found is None else found


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> _V:
    """Put ``value`` in ``memo`` (emptied first when full); return it."""
    if len(memo) >= _TEXT_CACHE_MAX:
        memo.clear()
    memo[key] = value
    return value


def _device(row: Any) -> DeviceRecord:
    return DeviceRecord(
        _aid(row[0]),
        DeviceId(int(row[1])),
        row[2],
        int(row[3]),
        bytes(row[4]),
        bytes(row[5]),
        int(row[6]),
    )


def _envelope(row: Any) -> StoredEnvelope:
    seq, type_, src, src_dev, src_addr, mid, ts, server_ts, body = row
    return StoredEnvelope(
        int(seq),
        int(type_),
        None if src is None else _aid(src),
        None if src_dev is None else DeviceId(int(src_dev)),
        None if src_addr is None else str(src_addr),
        bytes(mid),
        int(ts),
        int(server_ts),
        bytes(body),
    )


def _register(
    conn: sqlite3.Connection,
    address: Address,
    new_account_id: AccountId,
    device: NewDevice,
    now: int,
) -> AccountId:
    row = conn.execute(
        "SELECT account_id FROM accounts WHERE app = ? AND identifier = ?",
        (address.app, address.identifier),
    ).fetchone()
    if row is None:
        account_id = new_account_id
        conn.execute(
            "INSERT INTO accounts (account_id, app, identifier, identity_key, created_at)"
            " VALUES (?, ?, ?, NULL, ?)",
            (str(account_id), address.app, address.identifier, now),
        )
    else:
        account_id = _aid(row[0])
        conn.execute("DELETE FROM devices WHERE account_id = ?", (str(account_id),))
        for sql in _DROP_ACCOUNT_MAILBOXES:
            conn.execute(sql, (str(account_id),))
        conn.execute(
            "UPDATE accounts SET identity_key = NULL, last_device_id = 1 WHERE account_id = ?",
            (str(account_id),),
        )
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            str(account_id),
            PRIMARY_DEVICE,
            device.name,
            device.registration_id,
            device.salt,
            device.password_hash,
            now,
        ),
    )
    return account_id


def _add_device(
    conn: sqlite3.Connection, account: str, device: NewDevice, now: int, max_devices: int
) -> DeviceId:
    row = conn.execute(
        "UPDATE accounts SET last_device_id = last_device_id + 1 WHERE account_id = ?"
        " RETURNING last_device_id",
        (account,),
    ).fetchone()
    if row is None:
        raise UnknownDevice("no such account")
    count = conn.execute(
        "SELECT COUNT(*) FROM devices WHERE account_id = ?", (account,)
    ).fetchone()[0]
    if int(count) >= max_devices:
        raise TooManyDevices("the account has the maximum number of devices")
    device_id = DeviceId(int(row[0]))
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            account,
            device_id,
            device.name,
            device.registration_id,
            device.salt,
            device.password_hash,
            now,
        ),
    )
    return device_id


def _remove_device(conn: sqlite3.Connection, account_id: AccountId, device_id: DeviceId) -> bool:
    where = (str(account_id), device_id)
    deleted = conn.execute(
        "DELETE FROM devices WHERE account_id = ? AND device_id = ?", where
    ).rowcount
    for sql in _DROP_DEVICE_MAILBOX:
        conn.execute(sql, where)
    return bool(deleted)


class _Accounts:
    def __init__(self, db: Database, cache: ReadCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def register(
        self, address: Address, *, new_account_id: AccountId, device: NewDevice, now: int
    ) -> AccountId:
        return await self._db.write(_register, address, new_account_id, device, now)

    async def add_device(
        self, account_id: AccountId, device: NewDevice, *, now: int, max_devices: int
    ) -> DeviceId:
        account = str(account_id)
        return await self._db.write(_add_device, account, device, now, max_devices)

    async def remove_device(self, account_id: AccountId, device_id: DeviceId) -> bool:
        if device_id == PRIMARY_DEVICE:
            return False
        return await self._db.write(_remove_device, account_id, device_id)

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        def op(conn: sqlite3.Connection) -> AccountRecord | None:
            row = conn.execute(
                "SELECT app, identifier, identity_key, created_at FROM accounts"
                " WHERE account_id = ?",
                (str(account_id),),
            ).fetchone()
            if row is None:
                return None
            key = None if row[2] is None else bytes(row[2])
            return AccountRecord(account_id, Address(row[0], row[1]), key, int(row[3]))

        return await self._db.read(op)

    async def get_device(self, account_id: AccountId, device_id: DeviceId) -> DeviceRecord | None:
        def op(conn: sqlite3.Connection) -> DeviceRecord | None:
            row = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices"  # noqa: S608
                " WHERE account_id = ? AND device_id = ?",
                (str(account_id), device_id),
            ).fetchone()
            return None if row is None else _device(row)

        return await self._db.read(op)

    async def list_devices(self, account_id: AccountId) -> list[DeviceRecord]:
        cache = self._cache
        if cache is None:
            return await self._list_devices(account_id)
        found = cache.devices(account_id)
        if found is not None:
            return found
        token = cache.token()
        devices = await self._list_devices(account_id)
        cache.put_devices(account_id, devices, token)
        return devices

    async def _list_devices(self, account_id: AccountId) -> list[DeviceRecord]:
        def op(conn: sqlite3.Connection) -> list[DeviceRecord]:
            rows = conn.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices"  # noqa: S608
                " WHERE account_id = ? ORDER BY device_id",
                (str(account_id),),
            ).fetchall()
            return [_device(r) for r in rows]

        return await self._db.read(op)

    async def lookup(
        self, addresses: Sequence[Address]
    ) -> dict[Address, tuple[AccountId, list[DeviceId]]]:
        def op(conn: sqlite3.Connection) -> dict[Address, tuple[AccountId, list[DeviceId]]]:
            found: dict[Address, tuple[AccountId, list[DeviceId]]] = {}
            for address in addresses:
                row = conn.execute(
                    "SELECT account_id FROM accounts WHERE app = ? AND identifier = ?",
                    (address.app, address.identifier),
                ).fetchone()
                if row is None:
                    continue
                devices = conn.execute(
                    "SELECT device_id FROM devices WHERE account_id = ? ORDER BY device_id",
                    (row[0],),
                ).fetchall()
                found[address] = (_aid(row[0]), [DeviceId(int(d[0])) for d in devices])
            return found

        return await self._db.read(op)


def _device_exists(conn: sqlite3.Connection, account: str, device_id: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM devices WHERE account_id = ? AND device_id = ?", (account, device_id)
    ).fetchone()
    return row is not None


def _update_keys(
    conn: sqlite3.Connection, account: str, device_id: DeviceId, update: KeyUpdate
) -> None:
    if not _device_exists(conn, account, device_id):
        raise UnknownDevice("no such device")
    row = conn.execute(
        "SELECT identity_key FROM accounts WHERE account_id = ?", (account,)
    ).fetchone()
    identity = None if row[0] is None else bytes(row[0])
    if update.identity_key is not None:
        if identity is not None and identity != update.identity_key:
            raise IdentityKeyChanged("identity key differs from the registered one")
        identity = update.identity_key
    where = (account, device_id)
    has_signed = conn.execute(
        "SELECT 1 FROM signed_prekeys WHERE account_id = ? AND device_id = ?", where
    ).fetchone()
    has_last = conn.execute(
        "SELECT 1 FROM pq_last_resort_prekeys WHERE account_id = ? AND device_id = ?",
        where,
    ).fetchone()
    if (
        identity is None
        or (has_signed is None and update.signed_prekey is None)
        or (has_last is None and update.pq_last_resort is None)
    ):
        raise KeysNotSet("identity key, signed prekey and last-resort PQ prekey required")
    conn.execute("UPDATE accounts SET identity_key = ? WHERE account_id = ?", (identity, account))
    for table, key in (
        ("signed_prekeys", update.signed_prekey),
        ("pq_last_resort_prekeys", update.pq_last_resort),
    ):
        if key is None:
            continue
        conn.execute(f"DELETE FROM {table} WHERE account_id = ? AND device_id = ?", where)  # noqa: S608
        conn.execute(
            f"INSERT INTO {table} (account_id, device_id, key_id, public_key, signature)"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?)",
            (*where, key.key_id, key.public_key, key.signature),
        )
    if update.one_time is not None:
        conn.execute("DELETE FROM one_time_prekeys WHERE account_id = ? AND device_id = ?", where)
        conn.executemany(
            "INSERT INTO one_time_prekeys (account_id, device_id, key_id, public_key)"
            " VALUES (?, ?, ?, ?)",
            [(*where, k.key_id, k.public_key) for k in update.one_time],
        )
    if update.pq_one_time is not None:
        conn.execute(
            "DELETE FROM pq_one_time_prekeys WHERE account_id = ? AND device_id = ?",
            where,
        )
        conn.executemany(
            "INSERT INTO pq_one_time_prekeys"
            " (account_id, device_id, key_id, public_key, signature)"
            " VALUES (?, ?, ?, ?, ?)",
            [(*where, k.key_id, k.public_key, k.signature) for k in update.pq_one_time],
        )


def _take_bundle(
    conn: sqlite3.Connection, account: str, device_id: DeviceId | None
) -> KeyBundle | None:
    row = conn.execute(
        "SELECT identity_key FROM accounts WHERE account_id = ?", (account,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    identity = bytes(row[0])
    devices = conn.execute(
        "SELECT d.device_id, d.registration_id, s.key_id, s.public_key, s.signature,"
        " l.key_id, l.public_key, l.signature FROM devices d"
        " JOIN signed_prekeys s"
        " ON s.account_id = d.account_id AND s.device_id = d.device_id"
        " JOIN pq_last_resort_prekeys l"
        " ON l.account_id = d.account_id AND l.device_id = d.device_id"
        " WHERE d.account_id = ? ORDER BY d.device_id",
        (account,),
    ).fetchall()
    handed: list[DeviceKeys] = []
    for d in devices:
        dev = int(d[0])
        if device_id is not None and dev != device_id:
            continue
        where = (account, dev)
        ot = conn.execute(
            "SELECT key_id, public_key FROM one_time_prekeys"
            " WHERE account_id = ? AND device_id = ? ORDER BY key_id LIMIT 1",
            where,
        ).fetchone()
        prekey = None
        if ot is not None:
            prekey = OneTimeKey(int(ot[0]), bytes(ot[1]))
            conn.execute(
                "DELETE FROM one_time_prekeys"
                " WHERE account_id = ? AND device_id = ? AND key_id = ?",
                (*where, ot[0]),
            )
        pq_row = conn.execute(
            "SELECT key_id, public_key, signature FROM pq_one_time_prekeys"
            " WHERE account_id = ? AND device_id = ? ORDER BY key_id LIMIT 1",
            where,
        ).fetchone()
        if pq_row is not None:
            pq = SignedKey(int(pq_row[0]), bytes(pq_row[1]), bytes(pq_row[2]))
            conn.execute(
                "DELETE FROM pq_one_time_prekeys"
                " WHERE account_id = ? AND device_id = ? AND key_id = ?",
                (*where, pq_row[0]),
            )
        else:
            pq = SignedKey(int(d[5]), bytes(d[6]), bytes(d[7]))
        handed.append(
            DeviceKeys(
                DeviceId(dev),
                int(d[1]),
                SignedKey(int(d[2]), bytes(d[3]), bytes(d[4])),
                prekey,
                pq,
                pq_row is None,
            )
        )
    return KeyBundle(identity, tuple(handed)) if handed else None


class _Keys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def update_keys(
        self, account_id: AccountId, device_id: DeviceId, update: KeyUpdate
    ) -> None:
        await write_quiet(self._db, _update_keys, str(account_id), device_id, update)

    async def count_one_time(self, account_id: AccountId, device_id: DeviceId) -> KeyCounts:
        where = (str(account_id), device_id)

        def op(conn: sqlite3.Connection) -> KeyCounts:
            ec = conn.execute(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE account_id = ? AND device_id = ?",
                where,
            ).fetchone()[0]
            pq = conn.execute(
                "SELECT COUNT(*) FROM pq_one_time_prekeys WHERE account_id = ? AND device_id = ?",
                where,
            ).fetchone()[0]
            return KeyCounts(int(ec), int(pq))

        return await self._db.read(op)

    async def take_bundle(
        self, account_id: AccountId, device_id: DeviceId | None
    ) -> KeyBundle | None:
        return await write_quiet(self._db, _take_bundle, str(account_id), device_id)


_ACK = (
    "DELETE FROM envelopes WHERE account_id = ? AND device_id = ?"
    " AND seq IN (SELECT value FROM json_each(?)) RETURNING seq, dedupe_key, expires_at, type,"
    " source_account, source_device, message_id, client_timestamp"
)
"""Delete acknowledged envelopes, the seqs given as one JSON array (any count, one statement)."""
_ACKED_ONE = (
    "SELECT seq, dedupe_key, expires_at, type, source_account, source_device, message_id,"
    " client_timestamp FROM envelopes WHERE account_id = ? AND device_id = ? AND seq = ?"
)
"""Read one acknowledged envelope, then :data:`_DELETE_ONE` deletes it (the usual
acknowledgement: no JSON to parse). Two statements, not ``DELETE ... RETURNING``: SQLite
buffers returned rows in a temporary b-tree, which cost more than the read (about 14,000
instructions per ack; docs/performance.md, "Session 6")."""
_DELETE_ONE = "DELETE FROM envelopes WHERE account_id = ? AND device_id = ? AND seq = ?"
_RECORD_DELIVERED = (
    "INSERT INTO delivered (account_id, device_id, dedupe_key, expires_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, device_id, dedupe_key)"
    " DO UPDATE SET expires_at = excluded.expires_at"
)


def _json_ints(values: Sequence[int]) -> str:
    """``values`` as a JSON array (``int()`` first: only digits reach the SQL)."""
    return "[" + ",".join([str(int(v)) for v in values]) + "]"


def _first_int(row: Any) -> int:
    return int(row[0])


def _insert_after_last_seq(conditions: str) -> str:
    """An ``INSERT OR IGNORE ... VALUES`` of one envelope whose seq is the device's last seq
    plus one, provided ``conditions`` hold (SQL on ``?1`` to ``?13``, appended to the seq's
    subquery); returns its seq (``RETURNING``).

    The seq is a scalar subquery on ``mailbox_seq``: NULL when the device does not exist or a
    condition fails, and the row's ``NOT NULL`` seq then makes ``OR IGNORE`` skip it, as it
    skips a dedupe key already queued (the unique ``envelopes_by_dedupe``). One row of
    ``VALUES``, never ``INSERT ... SELECT``: a select that reads ``envelopes`` while rows go
    into it is first copied into a temporary b-tree (SQLite's guard against reading its own
    inserts), a table opened, written and dropped per message; the ``VALUES`` form runs in
    about three quarters of the instructions (docs/performance.md, "Session 6").
    The ``envelopes_advance_last_seq`` trigger (schemas 6 and 8) moves the device's counter
    in the same statement.
    """
    return (
        "INSERT OR IGNORE INTO envelopes (account_id, device_id, seq, dedupe_key, type,"  # noqa: S608 - constants
        " source_account, source_device, source_address, message_id, client_timestamp,"
        " server_timestamp, expires_at, body)"
        " VALUES (?1, ?2, (SELECT d.last_seq + 1 FROM mailbox_seq d"
        f" WHERE d.account_id = ?1 AND d.device_id = ?2{conditions}),"
        " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING seq"
    )


_INSERT_RECEIPT = _insert_after_last_seq("")
"""Enqueue one delivery receipt unless it is queued: no delivered probe (a receipt's dedupe
key is longer than any message id and receipts get no delivered record, so the probe never
finds one). No row inserted: the device is gone or the receipt is queued (the same id
delivered again after its delivered record lapsed)."""
_INSERT_NEXT = _insert_after_last_seq(
    " AND NOT EXISTS (SELECT 1 FROM delivered x WHERE x.account_id = ?1"
    " AND x.device_id = ?2 AND x.dedupe_key = ?3 AND x.expires_at > ?10)"
    " AND (SELECT COUNT(*) FROM envelopes e WHERE e.account_id = ?1 AND e.device_id = ?2) < ?13"
)
"""Enqueue one envelope unless its dedupe key is queued or was delivered (an unexpired
record), or its mailbox holds ``cap`` (``?13``) envelopes. No row inserted: see
:data:`_PROBE` for why."""
_PROBE = (
    "SELECT EXISTS (SELECT 1 FROM envelopes e WHERE e.account_id = d.account_id"
    " AND e.device_id = d.device_id AND e.dedupe_key = ?1)"
    " OR EXISTS (SELECT 1 FROM delivered x WHERE x.account_id = d.account_id"
    " AND x.device_id = d.device_id AND x.dedupe_key = ?1 AND x.expires_at > ?2)"
    " FROM devices d WHERE d.account_id = ?3 AND d.device_id = ?4"
)
"""Why :data:`_INSERT_NEXT` inserted nothing: no row, no such device; true, a duplicate;
false, the mailbox is full."""


_InsertRow = tuple[
    str, int, bytes, int, str | None, int | None, str | None, bytes, int, int, int, bytes, int
]
"""One envelope's :data:`_INSERT_NEXT` parameters, ``?1`` to ``?13`` (made by
:func:`_insert_rows` in the server)."""
_Count = tuple[str, str, ConversationState]
"""A :class:`SendCount` as :func:`record_send_in` takes it: sender, recipient (as stored), the
recipient's new side's state."""


def _insert_rows(
    envelopes: Sequence[OutgoingEnvelope], now: int, expires_at: int, cap: int
) -> list[_InsertRow]:
    """The envelopes as :func:`_enqueue` takes them: its statement's parameters, made in the
    server so that the writer unpickles only plain values (no records or UUIDs to rebuild)
    and formats no account id."""
    rows: list[_InsertRow] = []
    for env in envelopes:
        source = env.source
        rows.append(
            (
                _text(env.account_id),
                env.device_id,
                env.dedupe_key,
                env.type,
                None if source is None else _text(source),
                env.source_device,
                env.source_address,
                env.message_id,
                env.timestamp,
                now,
                expires_at,
                env.body,
                cap,
            )
        )
    return rows


def _enqueue(
    conn: sqlite3.Connection, rows: Sequence[_InsertRow], now: int, count: _Count | None
) -> tuple[list[int | None], bool]:
    """Enqueue the envelopes ``rows`` describe (see ``MailboxStore.enqueue``) and, if any was
    new, write ``count`` (``MetadataStore.record_send`` semantics) in the same transaction.

    Returns:
        Each envelope's new seq (``None``: a duplicate, not queued again), and whether a
        conversation changed. Only seqs cross back to the server: it still holds the
        envelopes and builds what was stored (:func:`_enqueued`), so the writer neither
        makes records nor pickles the bodies back.

    One statement per envelope in the usual case (each is a Python-to-SQLite round trip in
    the writer process: their number, more than their SQL, sets its pace). On
    :class:`MailboxFull` or :class:`UnknownDevice` envelopes may have been inserted: raising
    rolls the operation back.
    """
    seqs: list[int | None] = []
    full: list[tuple[str, int]] = []
    for values in rows:
        row = conn.execute(_INSERT_NEXT, values).fetchone()
        if row is not None:
            seqs.append(int(row[0]))
            continue
        seqs.append(None)
        account, device_id, dedupe_key = values[0], values[1], values[2]
        why = conn.execute(_PROBE, (dedupe_key, now, account, device_id)).fetchone()
        if why is None:
            raise UnknownDevice("no such recipient device")
        if not why[0] and (account, device_id) not in full:
            full.append((account, device_id))
    if full:
        raise MailboxFull([DeviceRef(_aid(a), DeviceId(d)) for a, d in full])
    if count is None or seqs.count(None) == len(seqs):
        return seqs, False
    sender, recipient, recipient_state = count
    return seqs, record_send_in(conn, sender, recipient, recipient_state, now)


def _by_device(stored: Iterable[tuple[DeviceRef, StoredEnvelope]]) -> Enqueued:
    """New envelopes grouped by device, the devices in first-enqueue order."""
    queued: dict[DeviceRef, list[StoredEnvelope]] = {}
    for ref, envelope in stored:
        found = queued.get(ref)
        if found is None:
            queued[ref] = [envelope]
        else:
            found.append(envelope)
    return Enqueued(queued, queued) if queued else Enqueued()


def _enqueued(
    envelopes: Sequence[OutgoingEnvelope], seqs: Sequence[int | None], now: int
) -> Enqueued:
    """What :func:`_enqueue` stored: each envelope that got a seq, as a fetch returns it."""
    return _by_device(
        (
            DeviceRef(env.account_id, env.device_id),
            StoredEnvelope(
                seq,
                env.type,
                env.source,
                env.source_device,
                env.source_address,
                env.message_id,
                env.timestamp,
                now,
                env.body,
            ),
        )
        for env, seq in zip(envelopes, seqs, strict=True)
        if seq is not None
    )


_Receipt = tuple[str, int, int, bytes, int]
"""A delivery receipt :func:`_acknowledge` queued: its device's account (as stored) and device
id, its seq, the message id and the message's client timestamp."""


def _acknowledge(
    conn: sqlite3.Connection,
    account: str,
    account_bytes: bytes,
    device_id: DeviceId,
    seqs: Sequence[int],
    now: int,
    expires_at: int,
    receipt_source_address: str | None,
) -> list[_Receipt]:
    """Delete the acknowledged envelopes, record each delivered message (its dedupe key stays
    taken) and queue its delivery receipt (see ``MailboxStore.acknowledge``).

    A receipt needs no delivered record: its dedupe key is derived from a message that is
    itself deleted and recorded here, so it is never enqueued again.

    The acknowledging account comes as its stored text and its 16 bytes (for the receipts'
    dedupe keys), so the writer rebuilds no UUID.

    Returns:
        The receipts queued, as plain values (the server makes the records:
        :func:`_receipts_enqueued`).
    """
    if len(seqs) == 1:  # the usual acknowledgement: at most one row, nothing to sort
        where = (account, device_id, int(seqs[0]))
        row = conn.execute(_ACKED_ONE, where).fetchone()
        if row is None:
            return []
        conn.execute(_DELETE_ONE, where)
        if row[3] == RECEIPT_TYPE:
            return []
        conn.execute(_RECORD_DELIVERED, (account, device_id, row[1], row[2]))
        rows = [row]
    else:
        # one statement text whatever the count (prepared once): the seqs as a JSON array
        deleted = conn.execute(_ACK, (account, device_id, _json_ints(seqs))).fetchall()
        rows = [r for r in deleted if r[3] != RECEIPT_TYPE]
        if not rows:
            return []
        rows.sort(key=_first_int)  # receipts in the order of the messages
        conn.executemany(_RECORD_DELIVERED, [(account, device_id, r[1], r[2]) for r in rows])
    receipts: list[_Receipt] = []
    for _, _, _, _, source, source_device, message_id, timestamp in rows:
        if source is None or source_device is None:
            continue  # sealed sender: nobody to tell
        inserted = conn.execute(
            _INSERT_RECEIPT,
            (
                source,
                source_device,
                receipt_dedupe_key(message_id, account_bytes, device_id),
                RECEIPT_TYPE,
                account,
                device_id,
                receipt_source_address,
                message_id,
                timestamp,
                now,
                expires_at,
                b"",
            ),
        ).fetchone()
        if inserted is not None:  # else the device is gone or the receipt queued
            receipts.append((source, source_device, inserted[0], message_id, timestamp))
    return receipts


def _receipts_enqueued(
    receipts: Sequence[_Receipt],
    account_id: AccountId,
    device_id: DeviceId,
    now: int,
    receipt_source_address: str | None,
) -> Enqueued:
    """The receipts :func:`_acknowledge` queued, as a fetch returns them."""
    return _by_device(
        (
            DeviceRef(_stored_aid(account), DeviceId(int(device))),
            StoredEnvelope(
                int(seq),
                RECEIPT_TYPE,
                account_id,
                device_id,
                receipt_source_address,
                message_id,
                int(timestamp),
                now,
                b"",
            ),
        )
        for account, device, seq, message_id, timestamp in receipts
    )


_EXPIRE_ENVELOPES = "DELETE FROM envelopes WHERE expires_at <= ? RETURNING account_id, device_id"
_COUNT_EXPIRED = (
    "UPDATE devices SET expired_count = expired_count + ? WHERE account_id = ? AND device_id = ?"
)


_DELIVERED_SLICES = 1440
"""Delivered records are swept by account id range in this many slices, a full pass per day."""
_SLICE_MS = 86_400_000 // _DELIVERED_SLICES
_SWEEP_RANGE = "DELETE FROM delivered WHERE account_id >= ? AND account_id < ? AND expires_at <= ?"
_SWEEP_TAIL = "DELETE FROM delivered WHERE account_id >= ? AND expires_at <= ?"


def _slice_start(index: int) -> str:
    """The lowest account id of slice ``index`` (account ids are UUIDs in hex: slices split
    their first 32 bits evenly; slice 0 starts below every string)."""
    return "" if index == 0 else f"{index * 2**32 // _DELIVERED_SLICES:08x}"


def _sweep_delivered_slices(conn: sqlite3.Connection, first: int, end: int, now: int) -> None:
    """Delete the expired delivered records of slices ``first`` to ``end`` - 1."""
    if end == _DELIVERED_SLICES:
        conn.execute(_SWEEP_TAIL, (_slice_start(first), now))
    else:
        conn.execute(_SWEEP_RANGE, (_slice_start(first), _slice_start(end), now))


def _sweep_delivered(conn: sqlite3.Connection, now: int) -> None:
    """Delete expired delivered records: the slices due since the last sweep (one per
    :data:`_SLICE_MS`, in turn), or the whole table on the first sweep and once a day's
    worth is due."""
    next_slice, swept_until = conn.execute(
        "SELECT next_slice, swept_until FROM delivered_sweep"
    ).fetchone()
    due = (now - swept_until) // _SLICE_MS
    if due <= 0 and swept_until != 0:
        return
    if due >= _DELIVERED_SLICES or swept_until == 0:  # a day due, or never swept
        conn.execute("DELETE FROM delivered WHERE expires_at <= ?", (now,))
        conn.execute("UPDATE delivered_sweep SET swept_until = ?", (now,))
        return
    end = next_slice + due
    _sweep_delivered_slices(conn, next_slice, min(end, _DELIVERED_SLICES), now)
    if end > _DELIVERED_SLICES:
        end -= _DELIVERED_SLICES
        _sweep_delivered_slices(conn, 0, end, now)
    conn.execute(
        "UPDATE delivered_sweep SET next_slice = ?, swept_until = ?",
        (end % _DELIVERED_SLICES, swept_until + due * _SLICE_MS),
    )


def _expire(conn: sqlite3.Connection, now: int) -> int:
    """Delete expired envelopes and delivered records; count each device's expired envelopes.

    Schema 7 has no expiry indexes. Envelopes: one scan of the queued ones (each is read
    once, as the per-device count already did), then one update per device that lost
    envelopes. Delivered records: the slices due (see :func:`_sweep_delivered`), each a range
    of the primary key; a lapsed record is ignored by every read until it is deleted.
    """
    expired: dict[tuple[str, int], int] = {}
    for device in conn.execute(_EXPIRE_ENVELOPES, (now,)):
        expired[device] = expired.get(device, 0) + 1
    conn.executemany(_COUNT_EXPIRED, [(n, a, d) for (a, d), n in expired.items()])
    _sweep_delivered(conn, now)
    return sum(expired.values())


def _take_expired_count(
    conn: sqlite3.Connection, account_id: AccountId, device_id: DeviceId
) -> int:
    where = (str(account_id), device_id)
    row = conn.execute(
        "SELECT expired_count FROM devices WHERE account_id = ? AND device_id = ?", where
    ).fetchone()
    if row is None or int(row[0]) == 0:
        return 0
    conn.execute(
        "UPDATE devices SET expired_count = 0 WHERE account_id = ? AND device_id = ?",
        where,
    )
    return int(row[0])


class _Mailboxes:
    def __init__(self, db: Database, cache: ReadCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def enqueue(
        self,
        envelopes: Sequence[OutgoingEnvelope],
        *,
        now: int,
        expires_at: int,
        cap: int,
        count: SendCount | None = None,
    ) -> Enqueued:
        cache = self._cache
        token = (
            None if cache is None or count is None else cache.token(count.sender, count.recipient)
        )
        rows = _insert_rows(envelopes, now, expires_at, cap)
        counted = (
            None
            if count is None
            else (_text(count.sender), _text(count.recipient), count.recipient_state)
        )
        seqs, changed = await write_quiet(self._db, _enqueue, rows, now, counted)
        if changed and count is not None and cache is not None and token is not None:
            # a conversation was created or accepted: the pair's policy views follow
            cache.sent(count, token)
        return _enqueued(envelopes, seqs, now)

    async def fetch(
        self, account_id: AccountId, device_id: DeviceId, *, after_seq: int, limit: int, now: int
    ) -> list[StoredEnvelope]:
        def op(conn: sqlite3.Connection) -> list[StoredEnvelope]:
            rows = conn.execute(
                f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes"  # noqa: S608
                " WHERE account_id = ? AND device_id = ? AND seq > ? AND expires_at > ?"
                " ORDER BY seq LIMIT ?",
                (str(account_id), device_id, after_seq, now, limit),
            ).fetchall()
            return [_envelope(r) for r in rows]

        return await self._db.read(op)

    async def last_seq(self, account_id: AccountId, device_id: DeviceId) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT last_seq FROM mailbox_seq WHERE account_id = ? AND device_id = ?",
                (str(account_id), device_id),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._db.read(op)

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
        receipts = await write_quiet(
            self._db,
            _acknowledge,
            _text(account_id),
            account_id.bytes,
            device_id,
            seqs,
            now,
            expires_at,
            receipt_source_address,
        )
        if not receipts:
            return Enqueued()
        return _receipts_enqueued(receipts, account_id, device_id, now, receipt_source_address)

    async def expire(self, now: int) -> int:
        return await write_quiet(self._db, _expire, now)

    async def take_expired_count(self, account_id: AccountId, device_id: DeviceId) -> int:
        return await write_quiet(self._db, _take_expired_count, account_id, device_id)


class SqliteEngine:
    """The SQLite engine over one database file."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # the send path's reads are cached when this process watches every write
        cache = ReadCache(db) if isinstance(db, WatchedDatabase) else None
        self._storage = Storage(
            _Accounts(db, cache),
            _Keys(db),
            _Mailboxes(db, cache),
            SqliteGroupStore(db),
            SqliteMetadataStore(db)
            if cache is None or not isinstance(db, WatchedDatabase)
            else CachedMetadataStore(db, cache),
            codes=SqliteCodeStore(db),  # issue 7: shared pending codes
        )

    @classmethod
    def open(cls, path: Path, *, writer_cpus: frozenset[int] | None = None) -> SqliteEngine:
        """Open (create, migrate) the database at ``path``, its writer process on
        ``writer_cpus`` if given. Blocking.

        Raises:
            SchemaTooNew: The file was written by a newer kurir.
        """
        return cls(WatchedDatabase.open(path, writer_cpus=writer_cpus))

    @property
    def storage(self) -> Storage:
        """The stores."""
        return self._storage

    async def close(self) -> None:
        """Commit outstanding writes and close the database."""
        await self._db.close()
