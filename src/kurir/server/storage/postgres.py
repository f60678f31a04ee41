"""The PostgreSQL storage engine: the storage Protocols as explicit SQL over ``asyncpg``.

This module owns the account and key SQL of the PostgreSQL engine and :class:`PostgresEngine`,
which wires them with the group-committed mailboxes (:mod:`.postgres_mailbox`), the groups
(:mod:`.postgres_groups`) and the metadata (:mod:`.postgres_metadata`) over one
:class:`~kurir.server.storage.postgres_db.PgDatabase`. Each Protocol method is one
transaction (or one read statement). Semantics are those of the SQLite engine, checked by the
same conformance suite; concurrency comes from row locks instead of a single writer: an
account's row serialises its key uploads and device linking, and one-time prekeys are taken
with ``FOR UPDATE SKIP LOCKED`` so concurrent bundle fetches never share a key and never wait
on each other.

Addresses live in ``account_addresses`` (keyed by address) and everything else is keyed by
account id first, so the schema distributes on Citus (docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kurir.server.storage.codes_postgres import PgCodeStore
from kurir.server.storage.errors import (
    IdentityKeyChanged,
    KeysNotSet,
    TooManyDevices,
    UnknownDevice,
)
from kurir.server.storage.postgres_db import Conn, PgDatabase
from kurir.server.storage.postgres_groups import PgGroupStore
from kurir.server.storage.postgres_mailbox import PgMailboxes
from kurir.server.storage.postgres_metadata import PgMetadataStore
from kurir.server.storage.protocols import Storage
from kurir.server.storage.records import (
    AccountRecord,
    DeviceKeys,
    DeviceRecord,
    KeyBundle,
    KeyCounts,
    KeyUpdate,
    NewDevice,
    OneTimeKey,
    SignedKey,
)
from kurir.server.types import PRIMARY_DEVICE, AccountId, DeviceId
from kurir.wire.address import Address

__all__ = ["PostgresEngine"]

_DEVICE_COLUMNS = "account_id, device_id, name, registration_id, salt, password_hash, created_at"
_INSERT_DEVICE = f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"  # noqa: S608


def _device(row: Any) -> DeviceRecord:
    return DeviceRecord(
        AccountId(row["account_id"]),
        DeviceId(int(row["device_id"])),
        row["name"],
        int(row["registration_id"]),
        bytes(row["salt"]),
        bytes(row["password_hash"]),
        int(row["created_at"]),
    )


class _Accounts:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def register(
        self, address: Address, *, new_account_id: AccountId, device: NewDevice, now: int
    ) -> AccountId:
        async def op(conn: Conn) -> AccountId:
            # claiming the address first makes two concurrent registrations of one new
            # address agree: the second waits for the first's commit, then re-registers
            claimed = await conn.fetchval(
                "INSERT INTO account_addresses (app, identifier, account_id)"
                " VALUES ($1, $2, $3) ON CONFLICT (app, identifier) DO NOTHING"
                " RETURNING account_id",
                address.app,
                address.identifier,
                new_account_id,
            )
            if claimed is not None:
                account_id = new_account_id
                await conn.execute(
                    "INSERT INTO accounts (account_id, app, identifier, identity_key, created_at)"
                    " VALUES ($1, $2, $3, NULL, $4)",
                    account_id,
                    address.app,
                    address.identifier,
                    now,
                )
            else:
                existing = await conn.fetchval(
                    "SELECT account_id FROM account_addresses WHERE app = $1 AND identifier = $2",
                    address.app,
                    address.identifier,
                )
                account_id = AccountId(existing)
                await conn.execute(
                    "UPDATE accounts SET identity_key = NULL, last_device_id = 1"
                    " WHERE account_id = $1",
                    account_id,
                )
                await conn.execute("DELETE FROM devices WHERE account_id = $1", account_id)
            await conn.execute(
                _INSERT_DEVICE,
                account_id,
                PRIMARY_DEVICE,
                device.name,
                device.registration_id,
                device.salt,
                device.password_hash,
                now,
            )
            return account_id

        return await self._db.transaction(op)

    async def add_device(
        self, account_id: AccountId, device: NewDevice, *, now: int, max_devices: int
    ) -> DeviceId:
        async def op(conn: Conn) -> DeviceId:
            value = await conn.fetchval(
                "UPDATE accounts SET last_device_id = last_device_id + 1 WHERE account_id = $1"
                " RETURNING last_device_id",
                account_id,
            )
            if value is None:
                raise UnknownDevice("no such account")
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM devices WHERE account_id = $1", account_id
            )
            if int(count) >= max_devices:
                raise TooManyDevices("the account has the maximum number of devices")
            device_id = DeviceId(int(value))
            await conn.execute(
                _INSERT_DEVICE,
                account_id,
                device_id,
                device.name,
                device.registration_id,
                device.salt,
                device.password_hash,
                now,
            )
            return device_id

        return await self._db.transaction(op)

    async def remove_device(self, account_id: AccountId, device_id: DeviceId) -> bool:
        if device_id == PRIMARY_DEVICE:
            return False

        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                "DELETE FROM devices WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return status != "DELETE 0"

        return await self._db.transaction(op)

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        async def op(conn: Conn) -> AccountRecord | None:
            row = await conn.fetchrow(
                "SELECT app, identifier, identity_key, created_at FROM accounts"
                " WHERE account_id = $1",
                account_id,
            )
            if row is None:
                return None
            key = None if row["identity_key"] is None else bytes(row["identity_key"])
            address = Address(row["app"], row["identifier"])
            return AccountRecord(account_id, address, key, int(row["created_at"]))

        return await self._db.read(op)

    async def get_device(self, account_id: AccountId, device_id: DeviceId) -> DeviceRecord | None:
        async def op(conn: Conn) -> DeviceRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_DEVICE_COLUMNS} FROM devices"  # noqa: S608
                " WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return None if row is None else _device(row)

        return await self._db.read(op)

    async def list_devices(self, account_id: AccountId) -> list[DeviceRecord]:
        async def op(conn: Conn) -> list[DeviceRecord]:
            rows = await conn.fetch(
                f"SELECT {_DEVICE_COLUMNS} FROM devices"  # noqa: S608
                " WHERE account_id = $1 ORDER BY device_id",
                account_id,
            )
            return [_device(r) for r in rows]

        return await self._db.read(op)

    async def lookup(
        self, addresses: Sequence[Address]
    ) -> dict[Address, tuple[AccountId, list[DeviceId]]]:
        if not addresses:
            return {}

        async def op(conn: Conn) -> dict[Address, tuple[AccountId, list[DeviceId]]]:
            rows = await conn.fetch(
                "SELECT a.app, a.identifier, a.account_id, d.device_id"
                " FROM account_addresses a"
                " LEFT JOIN devices d ON d.account_id = a.account_id"
                " WHERE (a.app, a.identifier) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
                " ORDER BY d.device_id",
                [a.app for a in addresses],
                [a.identifier for a in addresses],
            )
            by_address: dict[tuple[str, str], tuple[AccountId, list[DeviceId]]] = {}
            for row in rows:
                entry = by_address.setdefault(
                    (row["app"], row["identifier"]), (AccountId(row["account_id"]), [])
                )
                if row["device_id"] is not None:
                    entry[1].append(DeviceId(int(row["device_id"])))
            found: dict[Address, tuple[AccountId, list[DeviceId]]] = {}
            for address in addresses:
                hit = by_address.get((address.app, address.identifier))
                if hit is not None:
                    found[address] = (hit[0], list(hit[1]))
            return found

        return await self._db.read(op)


class _Keys:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def update_keys(
        self, account_id: AccountId, device_id: DeviceId, update: KeyUpdate
    ) -> None:
        async def op(conn: Conn) -> None:
            # the account row lock serialises key uploads of one account (identity check)
            account = await conn.fetchrow(
                "SELECT a.identity_key,"
                " EXISTS (SELECT 1 FROM signed_prekeys s"
                "  WHERE s.account_id = d.account_id AND s.device_id = d.device_id) AS signed,"
                " EXISTS (SELECT 1 FROM pq_last_resort_prekeys l"
                "  WHERE l.account_id = d.account_id AND l.device_id = d.device_id) AS last"
                " FROM accounts a JOIN devices d ON d.account_id = a.account_id"
                " WHERE a.account_id = $1 AND d.device_id = $2 FOR NO KEY UPDATE OF a",
                account_id,
                device_id,
            )
            if account is None:
                raise UnknownDevice("no such device")
            identity = None if account["identity_key"] is None else bytes(account["identity_key"])
            if update.identity_key is not None:
                if identity is not None and identity != update.identity_key:
                    raise IdentityKeyChanged("identity key differs from the registered one")
                identity = update.identity_key
            if (
                identity is None
                or (not account["signed"] and update.signed_prekey is None)
                or (not account["last"] and update.pq_last_resort is None)
            ):
                raise KeysNotSet("identity key, signed prekey and last-resort PQ prekey required")
            await conn.execute(
                "UPDATE accounts SET identity_key = $2 WHERE account_id = $1", account_id, identity
            )
            for table, key in (
                ("signed_prekeys", update.signed_prekey),
                ("pq_last_resort_prekeys", update.pq_last_resort),
            ):
                if key is not None:
                    await conn.execute(
                        f"INSERT INTO {table}"  # noqa: S608
                        " (account_id, device_id, key_id, public_key, signature)"
                        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, device_id)"
                        " DO UPDATE SET key_id = EXCLUDED.key_id,"
                        " public_key = EXCLUDED.public_key, signature = EXCLUDED.signature",
                        account_id,
                        device_id,
                        key.key_id,
                        key.public_key,
                        key.signature,
                    )
            if update.one_time is not None:
                await conn.execute(
                    "DELETE FROM one_time_prekeys WHERE account_id = $1 AND device_id = $2",
                    account_id,
                    device_id,
                )
                await conn.executemany(
                    "INSERT INTO one_time_prekeys (account_id, device_id, key_id, public_key)"
                    " VALUES ($1, $2, $3, $4)",
                    [(account_id, device_id, k.key_id, k.public_key) for k in update.one_time],
                )
            if update.pq_one_time is not None:
                await conn.execute(
                    "DELETE FROM pq_one_time_prekeys WHERE account_id = $1 AND device_id = $2",
                    account_id,
                    device_id,
                )
                await conn.executemany(
                    "INSERT INTO pq_one_time_prekeys"
                    " (account_id, device_id, key_id, public_key, signature)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    [
                        (account_id, device_id, k.key_id, k.public_key, k.signature)
                        for k in update.pq_one_time
                    ],
                )

        await self._db.transaction(op)

    async def count_one_time(self, account_id: AccountId, device_id: DeviceId) -> KeyCounts:
        async def op(conn: Conn) -> KeyCounts:
            row = await conn.fetchrow(
                "SELECT (SELECT COUNT(*) FROM one_time_prekeys"
                "  WHERE account_id = $1 AND device_id = $2) AS ec,"
                " (SELECT COUNT(*) FROM pq_one_time_prekeys"
                "  WHERE account_id = $1 AND device_id = $2) AS pq",
                account_id,
                device_id,
            )
            if row is None:  # a SELECT without FROM always has its row
                return KeyCounts(0, 0)
            return KeyCounts(int(row["ec"]), int(row["pq"]))

        return await self._db.read(op)

    async def take_bundle(
        self, account_id: AccountId, device_id: DeviceId | None
    ) -> KeyBundle | None:
        async def op(conn: Conn) -> KeyBundle | None:
            identity = await conn.fetchval(
                "SELECT identity_key FROM accounts WHERE account_id = $1", account_id
            )
            if identity is None:
                return None
            devices = await conn.fetch(
                "SELECT d.device_id, d.registration_id, s.key_id AS s_id,"
                " s.public_key AS s_key, s.signature AS s_sig, l.key_id AS l_id,"
                " l.public_key AS l_key, l.signature AS l_sig FROM devices d"
                " JOIN signed_prekeys s"
                " ON s.account_id = d.account_id AND s.device_id = d.device_id"
                " JOIN pq_last_resort_prekeys l"
                " ON l.account_id = d.account_id AND l.device_id = d.device_id"
                " WHERE d.account_id = $1 AND ($2::integer IS NULL OR d.device_id = $2)"
                " ORDER BY d.device_id",
                account_id,
                device_id,
            )
            handed: list[DeviceKeys] = []
            for d in devices:
                dev = DeviceId(int(d["device_id"]))
                ot = await conn.fetchrow(
                    "DELETE FROM one_time_prekeys WHERE (account_id, device_id, key_id) ="
                    " (SELECT account_id, device_id, key_id FROM one_time_prekeys"
                    "  WHERE account_id = $1 AND device_id = $2"
                    "  ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    " RETURNING key_id, public_key",
                    account_id,
                    dev,
                )
                pq_row = await conn.fetchrow(
                    "DELETE FROM pq_one_time_prekeys WHERE (account_id, device_id, key_id) ="
                    " (SELECT account_id, device_id, key_id FROM pq_one_time_prekeys"
                    "  WHERE account_id = $1 AND device_id = $2"
                    "  ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    " RETURNING key_id, public_key, signature",
                    account_id,
                    dev,
                )
                if pq_row is not None:
                    pq = SignedKey(
                        int(pq_row["key_id"]),
                        bytes(pq_row["public_key"]),
                        bytes(pq_row["signature"]),
                    )
                else:
                    pq = SignedKey(int(d["l_id"]), bytes(d["l_key"]), bytes(d["l_sig"]))
                handed.append(
                    DeviceKeys(
                        dev,
                        int(d["registration_id"]),
                        SignedKey(int(d["s_id"]), bytes(d["s_key"]), bytes(d["s_sig"])),
                        None
                        if ot is None
                        else OneTimeKey(int(ot["key_id"]), bytes(ot["public_key"])),
                        pq,
                        pq_row is None,
                    )
                )
            return KeyBundle(bytes(identity), tuple(handed)) if handed else None

        return await self._db.transaction(op)


class PostgresEngine:
    """The PostgreSQL engine over one database (or one schema of it, via ``search_path``)."""

    def __init__(self, db: PgDatabase, *, writers: int = 2) -> None:
        self._db = db
        self._mailboxes = PgMailboxes(db, writers=writers)
        groups = PgGroupStore(db, self._mailboxes)
        self._metadata = metadata = PgMetadataStore(db)
        self._storage = Storage(
            _Accounts(db), _Keys(db), self._mailboxes, groups, metadata, codes=PgCodeStore(db)
        )

    @classmethod
    async def open(
        cls, dsn: str, *, migrate: bool = True, pool_size: int = 10, writers: int = 2
    ) -> PostgresEngine:
        """Connect to ``dsn`` (``postgresql://...``), check the schema and, with ``migrate``,
        apply pending migrations (as the SQLite engine does when it opens its file).

        Args:
            dsn: libpq-style URL; extra query parameters are server settings, e.g.
                ``?search_path=kurir``. Prefer ``PGPASSWORD`` or a passfile to a password in it.
            migrate: Apply pending migrations; when false, a schema that is behind is refused.
            pool_size: Most connections this engine opens.
            writers: Group-commit writer tasks (each holds a connection while it commits).

        Raises:
            StorageError: The server is unreachable, or the schema is behind and
                ``migrate`` is false.
            SchemaTooNew: The database was migrated by a newer kurir.
        """
        if not 1 <= writers < pool_size:
            raise ValueError("need 1 <= writers < pool_size")
        db = await PgDatabase.open(dsn, migrate=migrate, min_size=1, max_size=pool_size)
        return cls(db, writers=writers)

    @property
    def storage(self) -> Storage:
        """The stores."""
        return self._storage

    @property
    def mailbox_batches(self) -> int:
        """Group-commit transactions committed by the mailboxes so far."""
        return self._mailboxes.batches

    @property
    def metadata_batches(self) -> int:
        """Group-commit transactions committed for message counts so far."""
        return self._metadata.batches

    async def close(self) -> None:
        """Finish queued mailbox writes, then close every connection."""
        await self._mailboxes.close()
        await self._metadata.close()
        await self._db.close()
