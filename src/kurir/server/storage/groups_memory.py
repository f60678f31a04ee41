"""The in-memory reference :class:`~kurir.server.storage.groups.GroupStore`.

This module owns the reference semantics of group storage: plain dictionaries, every method
atomic because it checks everything before the first change and never awaits in between
changes. Accounts and devices are read through the engine's own
:class:`~kurir.server.storage.protocols.AccountStore` (the same in-memory state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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
from kurir.server.storage.protocols import AccountStore, MailboxStore
from kurir.server.storage.records import Enqueued, OutgoingEnvelope
from kurir.server.types import AccountId, DeviceRef

__all__ = ["MemoryGroupStore"]


@dataclass
class _Member:
    role: Role
    joined_at: int
    settings: MemberSettings = field(default_factory=MemberSettings)


@dataclass
class _Group:
    name: str
    avatar: bytes | None
    created_at: int
    updated_at: int
    revision: int = 1
    members: dict[AccountId, _Member] = field(default_factory=dict)  # join order


class MemoryGroupStore:
    """Groups in dictionaries.

    Args:
        accounts: The engine's account store (accounts must exist; devices for fan-out).
        mailboxes: The engine's mailbox store (fan-out enqueues into it).
    """

    def __init__(self, accounts: AccountStore, mailboxes: MailboxStore) -> None:
        self._accounts = accounts
        self._mailboxes = mailboxes
        self._groups: dict[GroupId, _Group] = {}

    async def _record(self, group_id: GroupId, group: _Group) -> GroupRecord:
        members = []
        for account_id, m in group.members.items():
            account = await self._accounts.get_account(account_id)
            if account is None:  # the account went away: it is no member any more
                continue
            listed = await self._accounts.list_devices(account_id)
            devices = tuple(d.device_id for d in listed)
            registrations = tuple(d.registration_id for d in listed)
            members.append(
                MemberRecord(
                    account_id,
                    account.address,
                    m.role,
                    m.joined_at,
                    devices,
                    m.settings,
                    registrations,
                )
            )
        return GroupRecord(
            group_id,
            group.name,
            group.avatar,
            group.revision,
            group.created_at,
            group.updated_at,
            tuple(members),
        )

    def _member_group(self, group_id: GroupId, caller: AccountId) -> _Group:
        group = self._groups.get(group_id)
        if group is None or caller not in group.members:
            raise UnknownGroup("no such group")
        return group

    def _admin_group(self, group_id: GroupId, actor: AccountId) -> _Group:
        group = self._member_group(group_id, actor)
        if group.members[actor].role is not Role.ADMIN:
            raise NotAdmin("only admins may do this")
        return group

    async def _check_accounts(self, accounts: Sequence[AccountId]) -> None:
        for account_id in accounts:
            if await self._accounts.get_account(account_id) is None:
                raise UnknownMember("no such account")

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
        everyone = list(dict.fromkeys([creator, *members]))
        if len(everyone) > cap:
            raise GroupFull(f"a group has at most {cap} members")
        await self._check_accounts(everyone)
        group = _Group(name, avatar, now, now)
        for account_id in everyone:
            role = Role.ADMIN if account_id == creator else Role.MEMBER
            group.members[account_id] = _Member(role, now)
        self._groups[group_id] = group
        return await self._record(group_id, group)

    async def get(self, group_id: GroupId, caller: AccountId) -> GroupRecord:
        return await self._record(group_id, self._member_group(group_id, caller))

    async def list_for(self, account_id: AccountId) -> list[GroupRecord]:
        found = [
            (g.created_at, gid, g) for gid, g in self._groups.items() if account_id in g.members
        ]
        found.sort(key=lambda t: (t[0], str(t[1])))
        return [await self._record(gid, g) for _, gid, g in found]

    async def add_members(
        self,
        group_id: GroupId,
        *,
        actor: AccountId,
        accounts: Sequence[AccountId],
        now: int,
        cap: int,
    ) -> GroupRecord:
        group = self._admin_group(group_id, actor)
        new = [a for a in dict.fromkeys(accounts) if a not in group.members]
        await self._check_accounts(new)
        group = self._admin_group(group_id, actor)  # re-read after awaiting
        if len(group.members) + len(new) > cap:
            raise GroupFull(f"a group has at most {cap} members")
        if new:
            for account_id in new:
                group.members[account_id] = _Member(Role.MEMBER, now)
            group.revision += 1
            group.updated_at = now
        return await self._record(group_id, group)

    async def remove_member(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, now: int
    ) -> GroupRecord | None:
        group = (
            self._member_group(group_id, actor)
            if actor == target
            else self._admin_group(group_id, actor)
        )
        if target not in group.members:
            raise UnknownMember("not a member")
        del group.members[target]
        if not group.members:
            del self._groups[group_id]
            return None
        if all(m.role is not Role.ADMIN for m in group.members.values()):
            oldest = next(iter(group.members.values()))
            oldest.role = Role.ADMIN
        group.revision += 1
        group.updated_at = now
        return await self._record(group_id, group)

    async def set_role(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, role: Role, now: int
    ) -> GroupRecord:
        group = self._admin_group(group_id, actor)
        member = group.members.get(target)
        if member is None:
            raise UnknownMember("not a member")
        if member.role is not role:
            member.role = role
            group.revision += 1
            group.updated_at = now
        return await self._record(group_id, group)

    async def update_settings(
        self, group_id: GroupId, account_id: AccountId, settings: MemberSettings
    ) -> None:
        group = self._member_group(group_id, account_id)
        group.members[account_id] = replace(group.members[account_id], settings=settings)

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
        # the in-memory stores never suspend inside a call: check and enqueue are one step
        refs = await self.fanout_devices(group_id, sender.account_id)
        copies = [
            envelope._replace(account_id=r.account_id, device_id=r.device_id)
            for r in refs
            if r != sender
        ]
        return await self._mailboxes.enqueue(copies, now=now, expires_at=expires_at, cap=cap)

    async def fanout_devices(self, group_id: GroupId, sender: AccountId) -> list[DeviceRef]:
        group = self._member_group(group_id, sender)
        refs: list[DeviceRef] = []
        for account_id in list(group.members):
            for device in await self._accounts.list_devices(account_id):
                refs.append(DeviceRef(account_id, device.device_id))
        return refs
