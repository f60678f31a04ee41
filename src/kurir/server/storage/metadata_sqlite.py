"""The SQLite implementation of :class:`MetadataStore` (tables of migration 0004).

This module owns the SQL of settings, profile pictures, blocks, conversations, contacts and push
subscriptions. Each method is one operation on the engine's
:class:`~kurir.server.storage.sqlite_db.Database` (one group-committed transaction in the writer
process, its operation a module-level function here; reads on the reader connection). The SQL
stays portable to PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from kurir.server.storage.metadata_records import (
    AccountSettings,
    AvatarRecord,
    BlockRecord,
    ContactRecord,
    ConversationRecord,
    ConversationState,
    PolicyView,
    PushSubscription,
    Reachability,
)
from kurir.server.storage.sqlite_db import Database
from kurir.server.types import AccountId, DeviceId

__all__ = ["REPORT_TABLES", "SqliteMetadataStore", "record_send_in"]

_CONVERSATION = (
    "account_id, peer_account, state, archived, muted, sound, sent_count, received_count,"
    " created_at, last_activity"
)


def _aid(value: object) -> AccountId:
    return AccountId(UUID(str(value)))


def _conversation(row: Any) -> ConversationRecord:
    return ConversationRecord(
        _aid(row[0]),
        _aid(row[1]),
        ConversationState(row[2]),
        bool(row[3]),
        None if row[4] is None else bool(row[4]),
        row[5],
        int(row[6]),
        int(row[7]),
        int(row[8]),
        int(row[9]),
    )


def _settings(row: Any) -> AccountSettings:
    return AccountSettings(
        Reachability(row[0]), row[1], bool(row[2]), bool(row[3]), row[4], int(row[5])
    )


def _push(row: Any) -> PushSubscription:
    return PushSubscription(
        _aid(row[0]), DeviceId(int(row[1])), row[2], row[3], row[4], int(row[5])
    )


def _upsert_conversation(
    conn: sqlite3.Connection, owner: str, peer: str, state: ConversationState, now: int
) -> None:
    conn.execute(
        "INSERT INTO conversations (account_id, peer_account, state, created_at, last_activity)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, peer_account) DO NOTHING",
        (owner, peer, state.value, now, now),
    )


def record_send_in(
    conn: sqlite3.Connection,
    sender: str,
    recipient: str,
    recipient_state: ConversationState,
    now: int,
) -> bool:
    """``record_send`` inside the caller's transaction (the mailbox enqueue's, so that a
    message and its counts commit together).

    Returns:
        Whether a conversation's state changed (a side was created, or the sender's side
        became accepted); only the counts and times change otherwise.
    """
    accepted = ConversationState.ACCEPTED.value
    changed = False
    # the usual case first: both sides exist and the sender's is accepted (two statements)
    if not conn.execute(
        "UPDATE conversations SET sent_count = sent_count + 1, last_activity = ?"
        " WHERE account_id = ? AND peer_account = ? AND state = ?",
        (now, sender, recipient, accepted),
    ).rowcount:
        changed = True
        conn.execute(
            "INSERT INTO conversations (account_id, peer_account, state, sent_count,"
            " created_at, last_activity) VALUES (?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (account_id, peer_account) DO UPDATE SET state = excluded.state,"
            " sent_count = conversations.sent_count + 1, last_activity = excluded.last_activity",
            (sender, recipient, accepted, now, now),
        )
    if not conn.execute(
        "UPDATE conversations SET received_count = received_count + 1, last_activity = ?,"
        " archived = CASE WHEN EXISTS (SELECT 1 FROM account_settings s"
        " WHERE s.account_id = conversations.account_id AND s.unarchive_on_message = 1)"
        " THEN 0 ELSE archived END WHERE account_id = ? AND peer_account = ?",
        (now, recipient, sender),
    ).rowcount:
        changed = True
        conn.execute(
            "INSERT INTO conversations (account_id, peer_account, state, received_count,"
            " created_at, last_activity) VALUES (?, ?, ?, 1, ?, ?)",
            (recipient, sender, recipient_state.value, now, now),
        )
    return changed


def _put_settings(conn: sqlite3.Connection, values: tuple[object, ...]) -> None:
    conn.execute(
        "INSERT INTO account_settings (account_id, reachability, default_sound,"
        " default_muted, unarchive_on_message, display_name, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET"
        " reachability = excluded.reachability, default_sound = excluded.default_sound,"
        " default_muted = excluded.default_muted,"
        " unarchive_on_message = excluded.unarchive_on_message,"
        " display_name = excluded.display_name, updated_at = excluded.updated_at",
        values,
    )


def _put_avatar(conn: sqlite3.Connection, account: str, avatar: AvatarRecord | None) -> None:
    conn.execute("DELETE FROM avatars WHERE account_id = ?", (account,))
    if avatar is not None:
        conn.execute(
            "INSERT INTO avatars (account_id, content_type, data, updated_at) VALUES (?, ?, ?, ?)",
            (account, avatar.content_type, avatar.data, avatar.updated_at),
        )


def _block(conn: sqlite3.Connection, account: str, target: str, now: int) -> None:
    conn.execute(
        "INSERT INTO blocks (account_id, blocked_account, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (account_id, blocked_account) DO NOTHING",
        (account, target, now),
    )


def _unblock(conn: sqlite3.Connection, account: str, target: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM blocks WHERE account_id = ? AND blocked_account = ?", (account, target)
    )
    return cursor.rowcount > 0


def _set_state(
    conn: sqlite3.Connection, account: str, peer: str, state: ConversationState, now: int
) -> None:
    _upsert_conversation(conn, account, peer, state, now)
    conn.execute(
        "UPDATE conversations SET state = ? WHERE account_id = ? AND peer_account = ?",
        (state.value, account, peer),
    )


def _set_flags(
    conn: sqlite3.Connection,
    account: str,
    peer: str,
    archived: bool,
    muted: bool | None,
    sound: str | None,
) -> bool:
    cursor = conn.execute(
        "UPDATE conversations SET archived = ?, muted = ?, sound = ?"
        " WHERE account_id = ? AND peer_account = ?",
        (int(archived), None if muted is None else int(muted), sound, account, peer),
    )
    return cursor.rowcount > 0


def _replace_contacts(
    conn: sqlite3.Connection, account: str, entries: Sequence[str], now: int
) -> None:
    conn.execute("DELETE FROM contacts WHERE account_id = ?", (account,))
    conn.executemany(
        "INSERT INTO contacts (account_id, entry, position, added_at) VALUES (?, ?, ?, ?)",
        [(account, e, i, now) for i, e in enumerate(entries)],
    )


def _put_push(conn: sqlite3.Connection, s: PushSubscription) -> None:
    conn.execute(
        "INSERT INTO push_subscriptions (account_id, device_id, endpoint, p256dh, auth,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, device_id)"
        " DO UPDATE SET endpoint = excluded.endpoint, p256dh = excluded.p256dh,"
        " auth = excluded.auth, created_at = excluded.created_at",
        (str(s.account_id), s.device_id, s.endpoint, s.p256dh, s.auth, s.created_at),
    )


def _delete_push(conn: sqlite3.Connection, account: str, device_id: DeviceId) -> bool:
    cursor = conn.execute(
        "DELETE FROM push_subscriptions WHERE account_id = ? AND device_id = ?",
        (account, device_id),
    )
    return cursor.rowcount > 0


class SqliteMetadataStore:
    """Metadata in the engine's SQLite database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def settings(self, account_id: AccountId, *, default: Reachability) -> AccountSettings:
        """See :class:`MetadataStore`."""
        return await self.stored_settings(account_id) or AccountSettings(default)

    async def policy_view(
        self, owner: AccountId, peer: AccountId, peer_keys: Sequence[str]
    ) -> PolicyView:
        """See :class:`MetadataStore`."""
        me, them = str(owner), str(peer)
        marks = ", ".join("?" * len(peer_keys)) or "NULL"

        def op(conn: sqlite3.Connection) -> PolicyView:
            # only "?" placeholders are interpolated
            query = (
                "SELECT (SELECT reachability FROM account_settings WHERE account_id = ?),"  # noqa: S608
                " EXISTS (SELECT 1 FROM blocks WHERE account_id = ? AND blocked_account = ?),"
                " (SELECT state FROM conversations WHERE account_id = ? AND peer_account = ?),"
                " EXISTS (SELECT 1 FROM contacts WHERE account_id = ? AND entry IN"
                f" ({marks}))"
            )
            row = conn.execute(query, (me, me, them, me, them, me, *peer_keys)).fetchone()
            return PolicyView(
                None if row[0] is None else Reachability(row[0]),
                bool(row[1]),
                None if row[2] is None else ConversationState(row[2]),
                bool(row[3]),
            )

        return await self._db.read(op)

    async def stored_settings(self, account_id: AccountId) -> AccountSettings | None:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> AccountSettings | None:
            row = conn.execute(
                "SELECT reachability, default_sound, default_muted, unarchive_on_message,"
                " display_name, updated_at FROM account_settings WHERE account_id = ?",
                (str(account_id),),
            ).fetchone()
            return None if row is None else _settings(row)

        return await self._db.read(op)

    async def put_settings(self, account_id: AccountId, settings: AccountSettings) -> None:
        """See :class:`MetadataStore`."""
        values = (
            str(account_id),
            settings.reachability.value,
            settings.default_sound,
            int(settings.default_muted),
            int(settings.unarchive_on_message),
            settings.display_name,
            settings.updated_at,
        )

        await self._db.write(_put_settings, values)

    async def avatar(self, account_id: AccountId) -> AvatarRecord | None:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> AvatarRecord | None:
            row = conn.execute(
                "SELECT content_type, data, updated_at FROM avatars WHERE account_id = ?",
                (str(account_id),),
            ).fetchone()
            return None if row is None else AvatarRecord(row[0], bytes(row[1]), int(row[2]))

        return await self._db.read(op)

    async def put_avatar(self, account_id: AccountId, avatar: AvatarRecord | None) -> None:
        """See :class:`MetadataStore`."""
        await self._db.write(_put_avatar, str(account_id), avatar)

    async def block(self, account_id: AccountId, target: AccountId, *, now: int) -> None:
        """See :class:`MetadataStore`."""
        await self._db.write(_block, str(account_id), str(target), now)

    async def unblock(self, account_id: AccountId, target: AccountId) -> bool:
        """See :class:`MetadataStore`."""
        return await self._db.write(_unblock, str(account_id), str(target))

    async def is_blocked(self, account_id: AccountId, target: AccountId) -> bool:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM blocks WHERE account_id = ? AND blocked_account = ?",
                (str(account_id), str(target)),
            ).fetchone()
            return row is not None

        return await self._db.read(op)

    async def blocks(self, account_id: AccountId) -> list[BlockRecord]:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> list[BlockRecord]:
            rows = conn.execute(
                "SELECT blocked_account, created_at FROM blocks WHERE account_id = ?"
                " ORDER BY created_at, blocked_account",
                (str(account_id),),
            ).fetchall()
            return [BlockRecord(account_id, _aid(r[0]), int(r[1])) for r in rows]

        return await self._db.read(op)

    async def conversation(
        self, account_id: AccountId, peer: AccountId
    ) -> ConversationRecord | None:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> ConversationRecord | None:
            row = conn.execute(
                f"SELECT {_CONVERSATION} FROM conversations"  # noqa: S608
                " WHERE account_id = ? AND peer_account = ?",
                (str(account_id), str(peer)),
            ).fetchone()
            return None if row is None else _conversation(row)

        return await self._db.read(op)

    async def conversations(self, account_id: AccountId) -> list[ConversationRecord]:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> list[ConversationRecord]:
            rows = conn.execute(
                f"SELECT {_CONVERSATION} FROM conversations WHERE account_id = ?"  # noqa: S608
                " ORDER BY last_activity DESC, peer_account",
                (str(account_id),),
            ).fetchall()
            return [_conversation(r) for r in rows]

        return await self._db.read(op)

    async def set_state(
        self, account_id: AccountId, peer: AccountId, state: ConversationState, *, now: int
    ) -> None:
        """See :class:`MetadataStore`."""
        await self._db.write(_set_state, str(account_id), str(peer), state, now)

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
        return await self._db.write(_set_flags, str(account_id), str(peer), archived, muted, sound)

    async def record_send(
        self,
        sender: AccountId,
        recipient: AccountId,
        *,
        recipient_state: ConversationState,
        now: int,
    ) -> None:
        """See :class:`MetadataStore`."""
        await self._db.write(record_send_in, str(sender), str(recipient), recipient_state, now)

    async def replace_contacts(
        self, account_id: AccountId, entries: Sequence[str], *, now: int
    ) -> None:
        """See :class:`MetadataStore`."""
        await self._db.write(_replace_contacts, str(account_id), list(entries), now)

    async def contacts(self, account_id: AccountId) -> list[ContactRecord]:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> list[ContactRecord]:
            rows = conn.execute(
                "SELECT entry, added_at FROM contacts WHERE account_id = ? ORDER BY position",
                (str(account_id),),
            ).fetchall()
            return [ContactRecord(account_id, r[0], int(r[1])) for r in rows]

        return await self._db.read(op)

    async def has_contact(self, account_id: AccountId, entries: Sequence[str]) -> bool:
        """See :class:`MetadataStore`."""
        if not entries:
            return False
        marks = ", ".join("?" * len(entries))

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"SELECT 1 FROM contacts WHERE account_id = ? AND entry IN ({marks})",  # noqa: S608
                (str(account_id), *entries),
            ).fetchone()
            return row is not None

        return await self._db.read(op)

    async def put_push(self, subscription: PushSubscription) -> None:
        """See :class:`MetadataStore`."""
        await self._db.write(_put_push, subscription)

    async def push_subscription(
        self, account_id: AccountId, device_id: DeviceId
    ) -> PushSubscription | None:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> PushSubscription | None:
            row = conn.execute(
                "SELECT account_id, device_id, endpoint, p256dh, auth, created_at"
                " FROM push_subscriptions WHERE account_id = ? AND device_id = ?",
                (str(account_id), device_id),
            ).fetchone()
            return None if row is None else _push(row)

        return await self._db.read(op)

    async def push_subscriptions(self, account_id: AccountId) -> list[PushSubscription]:
        """See :class:`MetadataStore`."""

        def op(conn: sqlite3.Connection) -> list[PushSubscription]:
            rows = conn.execute(
                "SELECT account_id, device_id, endpoint, p256dh, auth, created_at"
                " FROM push_subscriptions WHERE account_id = ? ORDER BY device_id",
                (str(account_id),),
            ).fetchall()
            return [_push(r) for r in rows]

        return await self._db.read(op)

    async def delete_push(self, account_id: AccountId, device_id: DeviceId) -> bool:
        """See :class:`MetadataStore`."""
        return await self._db.write(_delete_push, str(account_id), device_id)

    async def report_rows(self, account_id: AccountId) -> dict[str, list[dict[str, object]]] | None:
        """See :class:`MetadataStore`: every table of :data:`REPORT_TABLES` that exists."""

        def op(conn: sqlite3.Connection) -> dict[str, list[dict[str, object]]]:
            present = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            out: dict[str, list[dict[str, object]]] = {}
            for table, (columns, where) in REPORT_TABLES.items():
                if table not in present:
                    continue
                cursor = conn.execute(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE {where}",  # noqa: S608
                    (str(account_id),),
                )
                out[table] = [dict(zip(columns, row, strict=True)) for row in cursor]
            return out

        return await self._db.read(op)


_MINE = "account_id = ?"
REPORT_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "accounts": (
        ("account_id", "app", "identifier", "identity_key", "created_at", "last_device_id"),
        _MINE,
    ),
    "devices": (
        (
            "account_id",
            "device_id",
            "name",
            "registration_id",
            "salt",
            "password_hash",
            "created_at",
            "expired_count",
        ),
        _MINE,
    ),
    "mailbox_seq": (("account_id", "device_id", "last_seq"), _MINE),
    "signed_prekeys": (("account_id", "device_id", "key_id", "public_key", "signature"), _MINE),
    "pq_last_resort_prekeys": (
        ("account_id", "device_id", "key_id", "public_key", "signature"),
        _MINE,
    ),
    "one_time_prekeys": (("account_id", "device_id", "key_id", "public_key"), _MINE),
    "pq_one_time_prekeys": (
        ("account_id", "device_id", "key_id", "public_key", "signature"),
        _MINE,
    ),
    "envelopes": (
        (
            "account_id",
            "device_id",
            "seq",
            "dedupe_key",
            "type",
            "source_account",
            "source_device",
            "source_address",
            "message_id",
            "client_timestamp",
            "server_timestamp",
            "expires_at",
            "body",
        ),
        _MINE,
    ),
    "delivered": (("account_id", "device_id", "dedupe_key", "expires_at"), _MINE),
    "account_settings": (
        (
            "account_id",
            "reachability",
            "default_sound",
            "default_muted",
            "unarchive_on_message",
            "display_name",
            "updated_at",
        ),
        _MINE,
    ),
    "avatars": (("account_id", "content_type", "data", "updated_at"), _MINE),
    "blocks": (("account_id", "blocked_account", "created_at"), _MINE),
    "conversations": (
        (
            "account_id",
            "peer_account",
            "state",
            "archived",
            "muted",
            "sound",
            "sent_count",
            "received_count",
            "created_at",
            "last_activity",
        ),
        _MINE,
    ),
    "contacts": (("account_id", "entry", "position", "added_at"), _MINE),
    "push_subscriptions": (
        ("account_id", "device_id", "endpoint", "p256dh", "auth", "created_at"),
        _MINE,
    ),
    "group_members": (
        (
            "group_id",
            "account_id",
            "role",
            "joined_at",
            "position",
            "archived",
            "muted_until",
            "sound",
        ),
        _MINE,
    ),
    "chat_groups": (
        ("group_id", "name", "avatar", "revision", "created_at", "updated_at"),
        "group_id IN (SELECT g.group_id FROM group_members g WHERE g.account_id = ?)",
    ),
}
"""What the transparency report reads: for each table, its columns and which rows are the
caller's. tests/server/test_transparency.py checks this covers every column of the schema."""
