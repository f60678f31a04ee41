"""The SQLite :class:`~kurir.server.storage.groups.GroupStore`: groups as explicit SQL.

This module owns the SQL of groups and members (schema: ``migrations/0003_groups.sql``). Each
Protocol method is one operation on the engine's
:class:`~kurir.server.storage.sqlite_db.Database` (one group-committed transaction in the writer
process, its operation a module-level function here; policy is checked inside it). Fan-out reads
every member device with one join. The SQL stays portable to PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from uuid import UUID

from kurir.server.storage.errors import MailboxFull
from kurir.server.storage.groups import (
    GroupFull,
    GroupId,
    GroupRecord,
    MemberRecord,
    MemberSettings,
    NotAdmin,
    Role,
    UnknownGroup,
    UnknownMember,
)
from kurir.server.storage.records import Enqueued, OutgoingEnvelope, StoredEnvelope
from kurir.server.storage.sqlite_cache import write_quiet
from kurir.server.storage.sqlite_db import Database
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

__all__ = ["SqliteGroupStore"]


def _aid(value: object) -> AccountId:
    return AccountId(UUID(str(value)))


def _role_of(conn: sqlite3.Connection, group: str, account: str) -> Role | None:
    row = conn.execute(
        "SELECT role FROM group_members WHERE group_id = ? AND account_id = ?", (group, account)
    ).fetchone()
    return None if row is None else Role(row[0])


def _require_member(conn: sqlite3.Connection, group: str, account: str) -> Role:
    role = _role_of(conn, group, account)
    if role is None:
        raise UnknownGroup("no such group")
    return role


def _require_admin(conn: sqlite3.Connection, group: str, account: str) -> None:
    if _require_member(conn, group, account) is not Role.ADMIN:
        raise NotAdmin("only admins may do this")


def _count(conn: sqlite3.Connection, group: str) -> int:
    return int(
        conn.execute("SELECT COUNT(*) FROM group_members WHERE group_id = ?", (group,)).fetchone()[
            0
        ]
    )


def _bump(conn: sqlite3.Connection, group: str, now: int) -> None:
    conn.execute(
        "UPDATE chat_groups SET revision = revision + 1, updated_at = ? WHERE group_id = ?",
        (now, group),
    )


def _insert_members(
    conn: sqlite3.Connection, group: str, accounts: Sequence[AccountId], role: Role, now: int
) -> None:
    position = int(
        conn.execute(
            "SELECT COALESCE(MAX(position), 0) FROM group_members WHERE group_id = ?", (group,)
        ).fetchone()[0]
    )
    for account_id in accounts:
        exists = conn.execute(
            "SELECT 1 FROM accounts WHERE account_id = ?", (str(account_id),)
        ).fetchone()
        if exists is None:
            raise UnknownMember("no such account")
        position += 1
        conn.execute(
            "INSERT INTO group_members (group_id, account_id, role, joined_at, position)"
            " VALUES (?, ?, ?, ?, ?)",
            (group, str(account_id), role.value, now, position),
        )


def _read(conn: sqlite3.Connection, group: str) -> GroupRecord:
    row = conn.execute(
        "SELECT name, avatar, revision, created_at, updated_at FROM chat_groups WHERE group_id = ?",
        (group,),
    ).fetchone()
    if row is None:
        raise UnknownGroup("no such group")
    devices: dict[str, list[DeviceId]] = {}
    registrations: dict[str, list[int]] = {}
    for account, device, registration_id in conn.execute(
        "SELECT d.account_id, d.device_id, d.registration_id FROM group_members m JOIN devices d"
        " ON d.account_id = m.account_id WHERE m.group_id = ? ORDER BY d.account_id, d.device_id",
        (group,),
    ):
        devices.setdefault(str(account), []).append(DeviceId(int(device)))
        registrations.setdefault(str(account), []).append(int(registration_id))
    members = tuple(
        MemberRecord(
            _aid(r[0]),
            Address(r[1], r[2]),
            Role(r[3]),
            int(r[4]),
            tuple(devices.get(str(r[0]), ())),
            MemberSettings(bool(r[5]), int(r[6]), r[7]),
            tuple(registrations.get(str(r[0]), ())),
        )
        for r in conn.execute(
            "SELECT m.account_id, a.app, a.identifier, m.role, m.joined_at, m.archived,"
            " m.muted_until, m.sound FROM group_members m JOIN accounts a"
            " ON a.account_id = m.account_id WHERE m.group_id = ? ORDER BY m.position",
            (group,),
        )
    )
    return GroupRecord(
        GroupId(UUID(group)),
        str(row[0]),
        None if row[1] is None else bytes(row[1]),
        int(row[2]),
        int(row[3]),
        int(row[4]),
        members,
    )


def _create(
    conn: sqlite3.Connection,
    group: str,
    name: str,
    avatar: bytes | None,
    creator: AccountId,
    others: list[AccountId],
    now: int,
) -> GroupRecord:
    conn.execute(
        "INSERT INTO chat_groups (group_id, name, avatar, revision, created_at,"
        " updated_at) VALUES (?, ?, ?, 1, ?, ?)",
        (group, name, avatar, now, now),
    )
    _insert_members(conn, group, [creator], Role.ADMIN, now)
    _insert_members(conn, group, others, Role.MEMBER, now)
    return _read(conn, group)


def _add_members(
    conn: sqlite3.Connection,
    group: str,
    actor: AccountId,
    accounts: list[AccountId],
    now: int,
    cap: int,
) -> GroupRecord:
    _require_admin(conn, group, str(actor))
    new = [a for a in dict.fromkeys(accounts) if _role_of(conn, group, str(a)) is None]
    if _count(conn, group) + len(new) > cap:
        raise GroupFull(f"a group has at most {cap} members")
    if new:
        _insert_members(conn, group, new, Role.MEMBER, now)
        _bump(conn, group, now)
    return _read(conn, group)


def _remove_member(
    conn: sqlite3.Connection, group: str, actor: AccountId, target: AccountId, now: int
) -> GroupRecord | None:
    if actor == target:
        _require_member(conn, group, str(actor))
    else:
        _require_admin(conn, group, str(actor))
    deleted = conn.execute(
        "DELETE FROM group_members WHERE group_id = ? AND account_id = ?",
        (group, str(target)),
    ).rowcount
    if not deleted:
        raise UnknownMember("not a member")
    if _count(conn, group) == 0:
        conn.execute("DELETE FROM chat_groups WHERE group_id = ?", (group,))
        return None
    admins = conn.execute(
        "SELECT COUNT(*) FROM group_members WHERE group_id = ? AND role = ?",
        (group, Role.ADMIN.value),
    ).fetchone()[0]
    if int(admins) == 0:
        conn.execute(
            "UPDATE group_members SET role = ? WHERE group_id = ? AND position ="
            " (SELECT MIN(position) FROM group_members WHERE group_id = ?)",
            (Role.ADMIN.value, group, group),
        )
    _bump(conn, group, now)
    return _read(conn, group)


def _set_role(
    conn: sqlite3.Connection,
    group: str,
    actor: AccountId,
    target: AccountId,
    role: Role,
    now: int,
) -> GroupRecord:
    _require_admin(conn, group, str(actor))
    current = _role_of(conn, group, str(target))
    if current is None:
        raise UnknownMember("not a member")
    if current is not role:
        conn.execute(
            "UPDATE group_members SET role = ? WHERE group_id = ? AND account_id = ?",
            (role.value, group, str(target)),
        )
        _bump(conn, group, now)
    return _read(conn, group)


def _update_settings(
    conn: sqlite3.Connection, group: str, account_id: AccountId, settings: MemberSettings
) -> None:
    updated = conn.execute(
        "UPDATE group_members SET archived = ?, muted_until = ?, sound = ?"
        " WHERE group_id = ? AND account_id = ?",
        (
            int(settings.archived),
            settings.muted_until,
            settings.sound,
            group,
            str(account_id),
        ),
    ).rowcount
    if not updated:
        raise UnknownGroup("no such group")


def _fan_out(
    conn: sqlite3.Connection,
    group: str,
    me: tuple[str, int],
    envelope: OutgoingEnvelope,
    now: int,
    expires_at: int,
    cap: int,
) -> Enqueued:
    _require_member(conn, group, me[0])
    # set-based: a handful of statements for the whole group, not five per device
    everyone = [
        (str(r[0]), int(r[1]))
        for r in conn.execute(
            "SELECT d.account_id, d.device_id FROM group_members m JOIN devices d"
            " ON d.account_id = m.account_id WHERE m.group_id = ?",
            (group,),
        )
    ]
    key = envelope.dedupe_key
    done = {
        (str(r[0]), int(r[1]))
        for r in conn.execute(
            "SELECT e.account_id, e.device_id FROM group_members m JOIN envelopes e"
            " ON e.account_id = m.account_id WHERE m.group_id = ? AND e.dedupe_key = ?"
            " UNION SELECT x.account_id, x.device_id FROM group_members m"
            " JOIN delivered x ON x.account_id = m.account_id"
            " WHERE m.group_id = ? AND x.dedupe_key = ? AND x.expires_at > ?",
            (group, key, group, key, now),
        )
    }
    wanted = {t for t in everyone if t != me and t not in done}
    if not wanted:
        return Enqueued()
    full = [
        DeviceRef(_aid(r[0]), DeviceId(int(r[1])))
        for r in conn.execute(
            "SELECT e.account_id, e.device_id FROM group_members m JOIN envelopes e"
            " ON e.account_id = m.account_id WHERE m.group_id = ?"
            " GROUP BY e.account_id, e.device_id HAVING COUNT(*) >= ?",
            (group, cap),
        )
        if (str(r[0]), int(r[1])) in wanted
    ]
    if full:
        raise MailboxFull(full)
    seqs = [
        (str(r[0]), int(r[1]), int(r[2]))
        for r in conn.execute(
            "UPDATE mailbox_seq SET last_seq = last_seq + 1 WHERE account_id IN"
            " (SELECT account_id FROM group_members WHERE group_id = ?)"
            " RETURNING account_id, device_id, last_seq",
            (group,),
        )
    ]
    # devices outside ``wanted`` (the sender's, duplicates) get their seq back
    undo = [(a, d) for a, d, _ in seqs if (a, d) not in wanted]
    conn.executemany(
        "UPDATE mailbox_seq SET last_seq = last_seq - 1 WHERE account_id = ? AND device_id = ?",
        undo,
    )
    source = None if envelope.source is None else str(envelope.source)
    conn.executemany(
        "INSERT INTO envelopes (account_id, device_id, seq, dedupe_key, type,"
        " source_account, source_device, source_address, message_id,"
        " client_timestamp, server_timestamp, expires_at, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                a,
                d,
                seq,
                key,
                envelope.type,
                source,
                envelope.source_device,
                envelope.source_address,
                envelope.message_id,
                envelope.timestamp,
                now,
                expires_at,
                envelope.body,
            )
            for a, d, seq in seqs
            if (a, d) in wanted
        ],
    )
    queued: dict[DeviceRef, list[StoredEnvelope]] = {}
    for a, d, seq in seqs:
        if (a, d) in wanted:
            stored = StoredEnvelope(
                seq,
                envelope.type,
                envelope.source,
                envelope.source_device,
                envelope.source_address,
                envelope.message_id,
                envelope.timestamp,
                now,
                envelope.body,
            )
            queued[DeviceRef(_aid(a), DeviceId(d))] = [stored]
    return Enqueued(queued, queued)


class SqliteGroupStore:
    """Groups in the engine's SQLite database.

    Args:
        db: The open database (migrated to schema 3 or later).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        group_id: GroupId,
        *,
        name: str,
        avatar: bytes | None,
        creator: AccountId,
        members: Sequence[AccountId],
        now: int,
        cap: int,
    ) -> GroupRecord:
        group = str(group_id)
        others = [a for a in dict.fromkeys(members) if a != creator]
        if len(others) + 1 > cap:
            raise GroupFull(f"a group has at most {cap} members")
        return await self._db.write(_create, group, name, avatar, creator, others, now)

    async def get(self, group_id: GroupId, caller: AccountId) -> GroupRecord:
        group = str(group_id)

        def op(conn: sqlite3.Connection) -> GroupRecord:
            _require_member(conn, group, str(caller))
            return _read(conn, group)

        return await self._db.read(op)

    async def list_for(self, account_id: AccountId) -> list[GroupRecord]:
        def op(conn: sqlite3.Connection) -> list[GroupRecord]:
            rows = conn.execute(
                "SELECT g.group_id FROM group_members m JOIN chat_groups g"
                " ON g.group_id = m.group_id WHERE m.account_id = ?"
                " ORDER BY g.created_at, g.group_id",
                (str(account_id),),
            ).fetchall()
            return [_read(conn, str(r[0])) for r in rows]

        return await self._db.read(op)

    async def add_members(
        self,
        group_id: GroupId,
        *,
        actor: AccountId,
        accounts: Sequence[AccountId],
        now: int,
        cap: int,
    ) -> GroupRecord:
        return await self._db.write(_add_members, str(group_id), actor, list(accounts), now, cap)

    async def remove_member(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, now: int
    ) -> GroupRecord | None:
        return await self._db.write(_remove_member, str(group_id), actor, target, now)

    async def set_role(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, role: Role, now: int
    ) -> GroupRecord:
        return await self._db.write(_set_role, str(group_id), actor, target, role, now)

    async def update_settings(
        self, group_id: GroupId, account_id: AccountId, settings: MemberSettings
    ) -> None:
        await self._db.write(_update_settings, str(group_id), account_id, settings)

    async def fan_out(
        self,
        group_id: GroupId,
        sender: DeviceRef,
        envelope: OutgoingEnvelope,
        *,
        now: int,
        expires_at: int,
        cap: int,
    ) -> Enqueued:
        me = (str(sender.account_id), int(sender.device_id))
        return await write_quiet(
            self._db, _fan_out, str(group_id), me, envelope, now, expires_at, cap
        )

    async def fanout_devices(self, group_id: GroupId, sender: AccountId) -> list[DeviceRef]:
        group = str(group_id)

        def op(conn: sqlite3.Connection) -> list[DeviceRef]:
            _require_member(conn, group, str(sender))
            rows = conn.execute(
                "SELECT d.account_id, d.device_id FROM group_members m JOIN devices d"
                " ON d.account_id = m.account_id WHERE m.group_id = ?"
                " ORDER BY m.position, d.device_id",
                (group,),
            ).fetchall()
            return [DeviceRef(_aid(r[0]), DeviceId(int(r[1]))) for r in rows]

        return await self._db.read(op)
