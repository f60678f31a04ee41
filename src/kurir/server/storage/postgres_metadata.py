"""The PostgreSQL :class:`~kurir.server.storage.metadata_protocols.MetadataStore`.

This module owns the metadata SQL of the PostgreSQL engine (tables of ``migrations_pg/0004``):
settings, profile pictures, blocks, conversations, contacts and push subscriptions, with the
semantics of the SQLite store. Each method is one transaction or one statement, except
``record_send`` (the per-message counts, on the send path): it is group committed like the
mailboxes, many calls summed into one multi-row upsert that locks its rows in key order, so
opposite sends on any nodes cannot deadlock. Every row is keyed by the
owning account id first (the Citus distribution column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from kurir.server.storage.metadata_records import (
    AccountSettings,
    AvatarRecord,
    BlockRecord,
    ContactRecord,
    ConversationRecord,
    ConversationState,
    PushSubscription,
    Reachability,
)
from kurir.server.storage.metadata_sqlite import REPORT_TABLES
from kurir.server.storage.postgres_batch import GroupCommit
from kurir.server.storage.postgres_db import Conn, PgDatabase
from kurir.server.storage.records import SendCount
from kurir.server.types import AccountId, DeviceId

__all__ = ["PG_REPORT_TABLES", "PgMetadataStore", "count_sends"]

_CONVERSATION: Final = (
    "account_id, peer_account, state, archived, muted, sound, sent_count, received_count,"
    " created_at, last_activity"
)

_SQLITE_DEVICE_COLUMNS = [c for c in REPORT_TABLES["devices"][0] if c != "expired_count"]
_PG_DEVICE_COLUMNS: Final = (*_SQLITE_DEVICE_COLUMNS, "last_seq", "expired_count")
"""PostgreSQL's ``devices`` keeps ``last_seq`` (in the schema's order)."""

PG_REPORT_TABLES: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    **{
        table: (columns, where.replace("?", "$1"))
        for table, (columns, where) in REPORT_TABLES.items()
        if table != "mailbox_seq"
    },
    "devices": (_PG_DEVICE_COLUMNS, "account_id = $1"),
    "account_addresses": (("app", "identifier", "account_id"), "account_id = $1"),
}
"""The SQLite engine's report tables, plus ``account_addresses`` (PostgreSQL keeps the
address-to-account map in its own table, keyed by address for sharding); each device's
``last_seq`` is a column of ``devices`` here, not a table of its own (SQLite schema 8)."""


def _conversation(row: Any) -> ConversationRecord:
    return ConversationRecord(
        AccountId(row["account_id"]),
        AccountId(row["peer_account"]),
        ConversationState(row["state"]),
        bool(row["archived"]),
        None if row["muted"] is None else bool(row["muted"]),
        row["sound"],
        int(row["sent_count"]),
        int(row["received_count"]),
        int(row["created_at"]),
        int(row["last_activity"]),
    )


def _push(row: Any) -> PushSubscription:
    return PushSubscription(
        AccountId(row["account_id"]),
        DeviceId(int(row["device_id"])),
        row["endpoint"],
        row["p256dh"],
        row["auth"],
        int(row["created_at"]),
    )


def _plain(value: object) -> object:
    # the report carries the same value types as the SQLite engine's (ids as text)
    return str(value) if isinstance(value, UUID) else value


@dataclass(frozen=True, slots=True)
class _Send:
    sender: AccountId
    recipient: AccountId
    recipient_state: ConversationState
    now: int


@dataclass(slots=True)
class _Side:
    """What a batch of sends does to one conversation row (one side of one conversation)."""

    insert_state: ConversationState
    created_at: int
    last_activity: int
    sent: int = 0
    received: int = 0


async def count_sends(conn: Conn, counts: Sequence[tuple[SendCount, int]]) -> None:
    """``record_send`` for each (count, now) inside the caller's transaction (the mailbox
    enqueue's, so that messages and their counts commit together)."""
    if counts:
        await _apply_sends(
            conn, [_Send(c.sender, c.recipient, c.recipient_state, now) for c, now in counts]
        )


async def _apply_sends(conn: Conn, sends: Sequence[_Send]) -> list[Exception | None]:
    """Count a batch of sends with ONE statement: the per-row sums of the batch, applied as
    the calls one after another would (a sent message makes the row accepted; a new row
    otherwise gets the first received message's state; activity is the last call's time)."""
    sides: dict[tuple[AccountId, AccountId], _Side] = {}
    for send in sends:
        for key, sent in (
            ((send.sender, send.recipient), True),
            ((send.recipient, send.sender), False),
        ):
            state = ConversationState.ACCEPTED if sent else send.recipient_state
            side = sides.setdefault(key, _Side(state, send.now, send.now))
            side.last_activity = send.now
            if sent:
                side.sent += 1
                side.insert_state = ConversationState.ACCEPTED
            else:
                side.received += 1
    keys = sorted(sides, key=lambda k: (k[0].bytes, k[1].bytes))
    await conn.execute(
        "INSERT INTO conversations (account_id, peer_account, state, sent_count,"
        " received_count, created_at, last_activity)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[],"
        " $6::bigint[], $7::bigint[]) ORDER BY 1, 2"  # rows locked in key order: no deadlock
        " ON CONFLICT (account_id, peer_account) DO UPDATE SET"
        " state = CASE WHEN EXCLUDED.sent_count > 0 THEN EXCLUDED.state"
        "  ELSE conversations.state END,"
        " sent_count = conversations.sent_count + EXCLUDED.sent_count,"
        " received_count = conversations.received_count + EXCLUDED.received_count,"
        " last_activity = EXCLUDED.last_activity,"
        " archived = CASE WHEN EXCLUDED.received_count > 0 AND EXISTS (SELECT 1"
        "  FROM account_settings s WHERE s.account_id = conversations.account_id"
        "  AND s.unarchive_on_message = 1) THEN 0 ELSE conversations.archived END",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [sides[k].insert_state.value for k in keys],
        [sides[k].sent for k in keys],
        [sides[k].received for k in keys],
        [sides[k].created_at for k in keys],
        [sides[k].last_activity for k in keys],
    )
    return [None] * len(sends)


class PgMetadataStore:
    """Metadata in the engine's PostgreSQL database.

    Args:
        db: The open database (migrated to schema 4 or later).
        writers: Group-commit writers for the per-message counts (``record_send``).
    """

    def __init__(self, db: PgDatabase, *, writers: int = 1) -> None:
        self._db = db
        self._sends: GroupCommit[_Send, None] = GroupCommit(
            db, _apply_sends, writers=writers, name="counts-writer"
        )

    @property
    def batches(self) -> int:
        """Group-commit transactions committed for message counts so far."""
        return self._sends.batches

    async def close(self) -> None:
        """Let the writers finish every queued count."""
        await self._sends.close()

    async def settings(self, account_id: AccountId, *, default: Reachability) -> AccountSettings:
        """See :class:`MetadataStore`."""
        return await self.stored_settings(account_id) or AccountSettings(default)

    async def stored_settings(self, account_id: AccountId) -> AccountSettings | None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> AccountSettings | None:
            row = await conn.fetchrow(
                "SELECT reachability, default_sound, default_muted, unarchive_on_message,"
                " display_name, updated_at FROM account_settings WHERE account_id = $1",
                account_id,
            )
            if row is None:
                return None
            return AccountSettings(
                Reachability(row["reachability"]),
                row["default_sound"],
                bool(row["default_muted"]),
                bool(row["unarchive_on_message"]),
                row["display_name"],
                int(row["updated_at"]),
            )

        return await self._db.read(op)

    async def put_settings(self, account_id: AccountId, settings: AccountSettings) -> None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO account_settings (account_id, reachability, default_sound,"
                " default_muted, unarchive_on_message, display_name, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id) DO UPDATE SET"
                " reachability = EXCLUDED.reachability, default_sound = EXCLUDED.default_sound,"
                " default_muted = EXCLUDED.default_muted,"
                " unarchive_on_message = EXCLUDED.unarchive_on_message,"
                " display_name = EXCLUDED.display_name, updated_at = EXCLUDED.updated_at",
                account_id,
                settings.reachability.value,
                settings.default_sound,
                int(settings.default_muted),
                int(settings.unarchive_on_message),
                settings.display_name,
                settings.updated_at,
            )

        await self._db.transaction(op)

    async def avatar(self, account_id: AccountId) -> AvatarRecord | None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> AvatarRecord | None:
            row = await conn.fetchrow(
                "SELECT content_type, data, updated_at FROM avatars WHERE account_id = $1",
                account_id,
            )
            if row is None:
                return None
            return AvatarRecord(row["content_type"], bytes(row["data"]), int(row["updated_at"]))

        return await self._db.read(op)

    async def put_avatar(self, account_id: AccountId, avatar: AvatarRecord | None) -> None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM avatars WHERE account_id = $1", account_id)
            if avatar is not None:
                await conn.execute(
                    "INSERT INTO avatars (account_id, content_type, data, updated_at)"
                    " VALUES ($1, $2, $3, $4)",
                    account_id,
                    avatar.content_type,
                    avatar.data,
                    avatar.updated_at,
                )

        await self._db.transaction(op)

    async def block(self, account_id: AccountId, target: AccountId, *, now: int) -> None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO blocks (account_id, blocked_account, created_at)"
                " VALUES ($1, $2, $3) ON CONFLICT (account_id, blocked_account) DO NOTHING",
                account_id,
                target,
                now,
            )

        await self._db.transaction(op)

    async def unblock(self, account_id: AccountId, target: AccountId) -> bool:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                "DELETE FROM blocks WHERE account_id = $1 AND blocked_account = $2",
                account_id,
                target,
            )
            return status != "DELETE 0"

        return await self._db.transaction(op)

    async def is_blocked(self, account_id: AccountId, target: AccountId) -> bool:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> bool:
            found = await conn.fetchval(
                "SELECT 1 FROM blocks WHERE account_id = $1 AND blocked_account = $2",
                account_id,
                target,
            )
            return found is not None

        return await self._db.read(op)

    async def blocks(self, account_id: AccountId) -> list[BlockRecord]:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> list[BlockRecord]:
            rows = await conn.fetch(
                "SELECT blocked_account, created_at FROM blocks WHERE account_id = $1"
                " ORDER BY created_at, blocked_account::text",
                account_id,
            )
            return [
                BlockRecord(account_id, AccountId(r["blocked_account"]), int(r["created_at"]))
                for r in rows
            ]

        return await self._db.read(op)

    async def conversation(
        self, account_id: AccountId, peer: AccountId
    ) -> ConversationRecord | None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> ConversationRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_CONVERSATION} FROM conversations"  # noqa: S608
                " WHERE account_id = $1 AND peer_account = $2",
                account_id,
                peer,
            )
            return None if row is None else _conversation(row)

        return await self._db.read(op)

    async def conversations(self, account_id: AccountId) -> list[ConversationRecord]:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> list[ConversationRecord]:
            rows = await conn.fetch(
                f"SELECT {_CONVERSATION} FROM conversations WHERE account_id = $1"  # noqa: S608
                " ORDER BY last_activity DESC, peer_account::text",
                account_id,
            )
            return [_conversation(r) for r in rows]

        return await self._db.read(op)

    async def set_state(
        self, account_id: AccountId, peer: AccountId, state: ConversationState, *, now: int
    ) -> None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO conversations (account_id, peer_account, state, created_at,"
                " last_activity) VALUES ($1, $2, $3, $4, $4)"
                " ON CONFLICT (account_id, peer_account) DO UPDATE SET state = EXCLUDED.state",
                account_id,
                peer,
                state.value,
                now,
            )

        await self._db.transaction(op)

    async def set_flags(
        self,
        account_id: AccountId,
        peer: AccountId,
        *,
        archived: bool,
        muted: bool | None,
        sound: str | None,
    ) -> bool:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                "UPDATE conversations SET archived = $3, muted = $4, sound = $5"
                " WHERE account_id = $1 AND peer_account = $2",
                account_id,
                peer,
                int(archived),
                None if muted is None else int(muted),
                sound,
            )
            return status != "UPDATE 0"

        return await self._db.transaction(op)

    async def record_send(
        self,
        sender: AccountId,
        recipient: AccountId,
        *,
        recipient_state: ConversationState,
        now: int,
    ) -> None:
        """See :class:`MetadataStore`. Group committed: concurrent sends share a transaction."""
        await self._sends.submit(_Send(sender, recipient, recipient_state, now))

    async def replace_contacts(
        self, account_id: AccountId, entries: Sequence[str], *, now: int
    ) -> None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM contacts WHERE account_id = $1", account_id)
            await conn.executemany(
                "INSERT INTO contacts (account_id, entry, position, added_at)"
                " VALUES ($1, $2, $3, $4)",
                [(account_id, e, i, now) for i, e in enumerate(entries)],
            )

        await self._db.transaction(op)

    async def contacts(self, account_id: AccountId) -> list[ContactRecord]:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> list[ContactRecord]:
            rows = await conn.fetch(
                "SELECT entry, added_at FROM contacts WHERE account_id = $1 ORDER BY position",
                account_id,
            )
            return [ContactRecord(account_id, r["entry"], int(r["added_at"])) for r in rows]

        return await self._db.read(op)

    async def has_contact(self, account_id: AccountId, entries: Sequence[str]) -> bool:
        """See :class:`MetadataStore`."""
        if not entries:
            return False

        async def op(conn: Conn) -> bool:
            found = await conn.fetchval(
                "SELECT 1 FROM contacts WHERE account_id = $1 AND entry = ANY($2::text[]) LIMIT 1",
                account_id,
                list(entries),
            )
            return found is not None

        return await self._db.read(op)

    async def put_push(self, subscription: PushSubscription) -> None:
        """See :class:`MetadataStore`."""
        s = subscription

        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO push_subscriptions (account_id, device_id, endpoint, p256dh, auth,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, device_id)"
                " DO UPDATE SET endpoint = EXCLUDED.endpoint, p256dh = EXCLUDED.p256dh,"
                " auth = EXCLUDED.auth, created_at = EXCLUDED.created_at",
                s.account_id,
                s.device_id,
                s.endpoint,
                s.p256dh,
                s.auth,
                s.created_at,
            )

        await self._db.transaction(op)

    async def push_subscription(
        self, account_id: AccountId, device_id: DeviceId
    ) -> PushSubscription | None:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> PushSubscription | None:
            row = await conn.fetchrow(
                "SELECT account_id, device_id, endpoint, p256dh, auth, created_at"
                " FROM push_subscriptions WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return None if row is None else _push(row)

        return await self._db.read(op)

    async def push_subscriptions(self, account_id: AccountId) -> list[PushSubscription]:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> list[PushSubscription]:
            rows = await conn.fetch(
                "SELECT account_id, device_id, endpoint, p256dh, auth, created_at"
                " FROM push_subscriptions WHERE account_id = $1 ORDER BY device_id",
                account_id,
            )
            return [_push(r) for r in rows]

        return await self._db.read(op)

    async def delete_push(self, account_id: AccountId, device_id: DeviceId) -> bool:
        """See :class:`MetadataStore`."""

        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                "DELETE FROM push_subscriptions WHERE account_id = $1 AND device_id = $2",
                account_id,
                device_id,
            )
            return status != "DELETE 0"

        return await self._db.transaction(op)

    async def report_rows(self, account_id: AccountId) -> dict[str, list[dict[str, object]]] | None:
        """See :class:`MetadataStore`: every table of :data:`PG_REPORT_TABLES` that exists,
        read in one (repeatable-read) transaction."""

        async def op(conn: Conn) -> dict[str, list[dict[str, object]]]:
            present = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
            out: dict[str, list[dict[str, object]]] = {}
            for table, (columns, where) in PG_REPORT_TABLES.items():
                if table not in present:
                    continue
                rows = await conn.fetch(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE {where}",  # noqa: S608
                    account_id,
                )
                out[table] = [{c: _plain(r[c]) for c in columns} for r in rows]
            return out

        async with self._db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            return await op(conn)
