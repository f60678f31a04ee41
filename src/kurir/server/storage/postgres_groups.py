"""The PostgreSQL :class:`~kurir.server.storage.groups.GroupStore`: groups as explicit SQL.

This module owns the group SQL of the PostgreSQL engine (schema: ``migrations_pg/0003``), with
the semantics of the SQLite store (same contract tests). Every change to a group first locks
the group's row (``FOR UPDATE``), so concurrent changes on any node are serialised per group:
the member cap, join positions and the last-admin rule are checked against a state nobody else
is changing. A member's own settings touch only that member's row. Rows are keyed by group id
(the Citus distribution column of both group tables, docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Sequence

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
from kurir.server.storage.postgres_db import Conn, PgDatabase
from kurir.server.storage.postgres_mailbox import PgMailboxes
from kurir.server.storage.records import Enqueued, OutgoingEnvelope
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

__all__ = ["PgGroupStore"]


async def _lock(conn: Conn, group_id: GroupId) -> None:
    if (
        await conn.fetchval("SELECT 1 FROM chat_groups WHERE group_id = $1 FOR UPDATE", group_id)
        is None
    ):
        raise UnknownGroup("no such group")


async def _role_of(conn: Conn, group_id: GroupId, account_id: AccountId) -> Role | None:
    role = await conn.fetchval(
        "SELECT role FROM group_members WHERE group_id = $1 AND account_id = $2",
        group_id,
        account_id,
    )
    return None if role is None else Role(role)


async def _require_member(conn: Conn, group_id: GroupId, account_id: AccountId) -> Role:
    role = await _role_of(conn, group_id, account_id)
    if role is None:
        raise UnknownGroup("no such group")
    return role


async def _require_admin(conn: Conn, group_id: GroupId, account_id: AccountId) -> None:
    if await _require_member(conn, group_id, account_id) is not Role.ADMIN:
        raise NotAdmin("only admins may do this")


async def _count(conn: Conn, group_id: GroupId) -> int:
    return int(
        await conn.fetchval("SELECT COUNT(*) FROM group_members WHERE group_id = $1", group_id)
    )


async def _bump(conn: Conn, group_id: GroupId, now: int) -> None:
    await conn.execute(
        "UPDATE chat_groups SET revision = revision + 1, updated_at = $2 WHERE group_id = $1",
        group_id,
        now,
    )


async def _insert_members(
    conn: Conn, group_id: GroupId, accounts: Sequence[AccountId], role: Role, now: int
) -> None:
    if not accounts:
        return
    known = {
        r["account_id"]
        for r in await conn.fetch(
            "SELECT account_id FROM accounts WHERE account_id = ANY($1::uuid[])", list(accounts)
        )
    }
    if any(a not in known for a in accounts):
        raise UnknownMember("no such account")
    position = int(
        await conn.fetchval(
            "SELECT COALESCE(MAX(position), 0) FROM group_members WHERE group_id = $1", group_id
        )
    )
    await conn.executemany(
        "INSERT INTO group_members (group_id, account_id, role, joined_at, position)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(group_id, a, role.value, now, position + i) for i, a in enumerate(accounts, 1)],
    )


async def _read(conn: Conn, group_id: GroupId) -> GroupRecord:
    row = await conn.fetchrow(
        "SELECT name, avatar, revision, created_at, updated_at FROM chat_groups"
        " WHERE group_id = $1",
        group_id,
    )
    if row is None:
        raise UnknownGroup("no such group")
    devices: dict[AccountId, list[DeviceId]] = {}
    registrations: dict[AccountId, list[int]] = {}
    for d in await conn.fetch(
        "SELECT d.account_id, d.device_id, d.registration_id FROM group_members m JOIN devices d"
        " ON d.account_id = m.account_id WHERE m.group_id = $1"
        " ORDER BY d.account_id, d.device_id",
        group_id,
    ):
        devices.setdefault(AccountId(d["account_id"]), []).append(DeviceId(int(d["device_id"])))
        registrations.setdefault(AccountId(d["account_id"]), []).append(int(d["registration_id"]))
    members = tuple(
        MemberRecord(
            AccountId(m["account_id"]),
            Address(m["app"], m["identifier"]),
            Role(m["role"]),
            int(m["joined_at"]),
            tuple(devices.get(AccountId(m["account_id"]), ())),
            MemberSettings(bool(m["archived"]), int(m["muted_until"]), m["sound"]),
            tuple(registrations.get(AccountId(m["account_id"]), ())),
        )
        for m in await conn.fetch(
            "SELECT m.account_id, a.app, a.identifier, m.role, m.joined_at, m.archived,"
            " m.muted_until, m.sound FROM group_members m JOIN accounts a"
            " ON a.account_id = m.account_id WHERE m.group_id = $1 ORDER BY m.position",
            group_id,
        )
    )
    return GroupRecord(
        group_id,
        str(row["name"]),
        None if row["avatar"] is None else bytes(row["avatar"]),
        int(row["revision"]),
        int(row["created_at"]),
        int(row["updated_at"]),
        members,
    )


class PgGroupStore:
    """Groups in the engine's PostgreSQL database.

    Args:
        db: The open database (migrated to schema 3 or later).
        mailboxes: The engine's mailboxes (group messages join their group commit).
    """

    def __init__(self, db: PgDatabase, mailboxes: PgMailboxes) -> None:
        self._db = db
        self._mailboxes = mailboxes

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
        """See :meth:`~kurir.server.storage.groups.GroupStore.create`."""
        others = [a for a in dict.fromkeys(members) if a != creator]
        if len(others) + 1 > cap:
            raise GroupFull(f"a group has at most {cap} members")

        async def op(conn: Conn) -> GroupRecord:
            await conn.execute(
                "INSERT INTO chat_groups (group_id, name, avatar, revision, created_at,"
                " updated_at) VALUES ($1, $2, $3, 1, $4, $4)",
                group_id,
                name,
                avatar,
                now,
            )
            await _insert_members(conn, group_id, [creator], Role.ADMIN, now)
            await _insert_members(conn, group_id, others, Role.MEMBER, now)
            return await _read(conn, group_id)

        return await self._db.transaction(op)

    async def get(self, group_id: GroupId, caller: AccountId) -> GroupRecord:
        """See :meth:`~kurir.server.storage.groups.GroupStore.get`."""

        async def op(conn: Conn) -> GroupRecord:
            await _require_member(conn, group_id, caller)
            return await _read(conn, group_id)

        # a transaction: the membership check and the reads see one snapshot
        return await self._db.transaction(op)

    async def list_for(self, account_id: AccountId) -> list[GroupRecord]:
        """See :meth:`~kurir.server.storage.groups.GroupStore.list_for`."""

        async def op(conn: Conn) -> list[GroupRecord]:
            rows = await conn.fetch(
                "SELECT g.group_id FROM group_members m JOIN chat_groups g"
                " ON g.group_id = m.group_id WHERE m.account_id = $1"
                " ORDER BY g.created_at, g.group_id",
                account_id,
            )
            return [await _read(conn, GroupId(r["group_id"])) for r in rows]

        return await self._db.transaction(op)

    async def add_members(
        self,
        group_id: GroupId,
        *,
        actor: AccountId,
        accounts: Sequence[AccountId],
        now: int,
        cap: int,
    ) -> GroupRecord:
        """See :meth:`~kurir.server.storage.groups.GroupStore.add_members`."""

        async def op(conn: Conn) -> GroupRecord:
            await _lock(conn, group_id)
            await _require_admin(conn, group_id, actor)
            new = [a for a in dict.fromkeys(accounts) if await _role_of(conn, group_id, a) is None]
            if await _count(conn, group_id) + len(new) > cap:
                raise GroupFull(f"a group has at most {cap} members")
            if new:
                await _insert_members(conn, group_id, new, Role.MEMBER, now)
                await _bump(conn, group_id, now)
            return await _read(conn, group_id)

        return await self._db.transaction(op)

    async def remove_member(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, now: int
    ) -> GroupRecord | None:
        """See :meth:`~kurir.server.storage.groups.GroupStore.remove_member`."""

        async def op(conn: Conn) -> GroupRecord | None:
            await _lock(conn, group_id)
            if actor == target:
                await _require_member(conn, group_id, actor)
            else:
                await _require_admin(conn, group_id, actor)
            status = await conn.execute(
                "DELETE FROM group_members WHERE group_id = $1 AND account_id = $2",
                group_id,
                target,
            )
            if status == "DELETE 0":
                raise UnknownMember("not a member")
            if await _count(conn, group_id) == 0:
                await conn.execute("DELETE FROM chat_groups WHERE group_id = $1", group_id)
                return None
            admins = await conn.fetchval(
                "SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND role = $2",
                group_id,
                Role.ADMIN.value,
            )
            if int(admins) == 0:
                await conn.execute(
                    "UPDATE group_members SET role = $2 WHERE group_id = $1 AND position ="
                    " (SELECT MIN(position) FROM group_members WHERE group_id = $1)",
                    group_id,
                    Role.ADMIN.value,
                )
            await _bump(conn, group_id, now)
            return await _read(conn, group_id)

        return await self._db.transaction(op)

    async def set_role(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, role: Role, now: int
    ) -> GroupRecord:
        """See :meth:`~kurir.server.storage.groups.GroupStore.set_role`."""

        async def op(conn: Conn) -> GroupRecord:
            await _lock(conn, group_id)
            await _require_admin(conn, group_id, actor)
            current = await _role_of(conn, group_id, target)
            if current is None:
                raise UnknownMember("not a member")
            if current is not role:
                await conn.execute(
                    "UPDATE group_members SET role = $3 WHERE group_id = $1 AND account_id = $2",
                    group_id,
                    target,
                    role.value,
                )
                await _bump(conn, group_id, now)
            return await _read(conn, group_id)

        return await self._db.transaction(op)

    async def update_settings(
        self, group_id: GroupId, account_id: AccountId, settings: MemberSettings
    ) -> None:
        """See :meth:`~kurir.server.storage.groups.GroupStore.update_settings`."""

        async def op(conn: Conn) -> None:
            status = await conn.execute(
                "UPDATE group_members SET archived = $3, muted_until = $4, sound = $5"
                " WHERE group_id = $1 AND account_id = $2",
                group_id,
                account_id,
                int(settings.archived),
                settings.muted_until,
                settings.sound,
            )
            if status == "UPDATE 0":
                raise UnknownGroup("no such group")

        await self._db.transaction(op)

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
        """See :meth:`~kurir.server.storage.groups.GroupStore.fan_out`."""

        async def resolve(conn: Conn) -> list[OutgoingEnvelope]:
            # FOR KEY SHARE on the member rows: a concurrent removal waits for this commit,
            # so nobody removed before the enqueue receives it
            rows = await conn.fetch(
                "SELECT m.account_id, m.position FROM group_members m WHERE m.group_id = $1"
                " ORDER BY m.account_id FOR KEY SHARE",
                group_id,
            )
            members = {AccountId(r["account_id"]): int(r["position"]) for r in rows}
            if sender.account_id not in members:
                raise UnknownGroup("no such group")
            devices = await conn.fetch(
                "SELECT account_id, device_id FROM devices WHERE account_id = ANY($1::uuid[])",
                list(members),
            )
            refs = sorted(
                (
                    DeviceRef(AccountId(d["account_id"]), DeviceId(int(d["device_id"])))
                    for d in devices
                ),
                key=lambda r: (members[r.account_id], r.device_id),
            )
            return [
                envelope._replace(account_id=r.account_id, device_id=r.device_id)
                for r in refs
                if r != sender
            ]

        return await self._mailboxes.enqueue_resolved(
            resolve, now=now, expires_at=expires_at, cap=cap
        )

    async def fanout_devices(self, group_id: GroupId, sender: AccountId) -> list[DeviceRef]:
        """See :meth:`~kurir.server.storage.groups.GroupStore.fanout_devices`."""

        async def op(conn: Conn) -> list[DeviceRef]:
            rows = await conn.fetch(
                "SELECT d.account_id, d.device_id FROM group_members m JOIN devices d"
                " ON d.account_id = m.account_id WHERE m.group_id = $1"
                " AND EXISTS (SELECT 1 FROM group_members s"
                "  WHERE s.group_id = $1 AND s.account_id = $2)"
                " ORDER BY m.position, d.device_id",
                group_id,
                sender,
            )
            if not rows and await _role_of(conn, group_id, sender) is None:
                raise UnknownGroup("no such group")
            return [
                DeviceRef(AccountId(r["account_id"]), DeviceId(int(r["device_id"]))) for r in rows
            ]

        return await self._db.read(op)
