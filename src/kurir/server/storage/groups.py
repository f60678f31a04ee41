"""Groups as the server stores them: records, refusals and the :class:`GroupStore` Protocol.

This module owns the contract of group storage (issue 6): a group's name, opaque avatar bytes,
revision and members with their role and per-member archive / mute / sound flags, and the
member devices a group message is fanned out to. Membership is the authority for fan-out.
Every method is one transaction and enforces its own policy inside it (admin rights, the
member cap, membership), so a refused call changes nothing. Rows are keyed by group id, then
account id. It knows nothing of HTTP, WebSockets or cryptography: the avatar is opaque.

Tree (all :class:`~kurir.server.storage.errors.RequestRefused`)::

    GroupRefused
      UnknownGroup        no such group, or the caller is not a member (not disclosed which)
      NotAdmin            the caller is a member but not an admin
      GroupFull           the change would exceed the member cap
      UnknownMember       an account to add does not exist, or a target is not a member
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType, Protocol
from uuid import UUID

from kurir.server.storage.errors import RequestRefused
from kurir.server.storage.records import Enqueued, OutgoingEnvelope
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

__all__ = [
    "GroupFull",
    "GroupId",
    "GroupRecord",
    "GroupRefused",
    "GroupStore",
    "MemberRecord",
    "MemberSettings",
    "NotAdmin",
    "Role",
    "UnknownGroup",
    "UnknownMember",
]

GroupId = NewType("GroupId", UUID)
"""The server-chosen random id of a group (also the clients' sender-key distribution id)."""


class Role(StrEnum):
    """A member's role: admins add, remove and promote; members send and leave."""

    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class MemberSettings:
    """One member's own view of the group (metadata the server keeps, docs/metadata.md).

    Attributes:
        archived: the member archived the conversation.
        muted_until: no push before this time (ms); 0 when not muted.
        sound: the notification sound's name, or ``None`` for the default.
    """

    archived: bool = False
    muted_until: int = 0
    sound: str | None = None


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member of a group."""

    account_id: AccountId
    address: Address
    role: Role
    joined_at: int
    devices: tuple[DeviceId, ...]
    settings: MemberSettings = field(default_factory=MemberSettings)
    registrations: tuple[int, ...] = ()
    """The registration id of each of ``devices``, in the same order (clients key the
    holders of their sender keys by it: a re-registered device must get the key again)."""


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A group and its members (in join order)."""

    group_id: GroupId
    name: str
    avatar: bytes | None = field(repr=False)
    revision: int
    created_at: int
    updated_at: int
    members: tuple[MemberRecord, ...]

    def member(self, account_id: AccountId) -> MemberRecord | None:
        """The member with this account id, or ``None``."""
        return next((m for m in self.members if m.account_id == account_id), None)


class GroupRefused(RequestRefused):
    """A group change or send that the group's state forbids; nothing was changed."""


class UnknownGroup(GroupRefused):
    """No such group, or the caller is not one of its members."""


class NotAdmin(GroupRefused):
    """The caller is a member without the admin role."""


class GroupFull(GroupRefused):
    """The group would exceed its member cap."""


class UnknownMember(GroupRefused):
    """An account to add does not exist, or the target of a change is not a member."""


class GroupStore(Protocol):
    """Groups and their members. Every method is one transaction."""

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
        """Create a group; ``creator`` becomes its admin, ``members`` its members.

        Raises:
            UnknownMember: an account does not exist.
            GroupFull: more than ``cap`` members (the creator counted).
        """
        ...

    async def get(self, group_id: GroupId, caller: AccountId) -> GroupRecord:
        """Return the group as its member ``caller`` sees it.

        Raises:
            UnknownGroup: no such group, or ``caller`` is not a member.
        """
        ...

    async def list_for(self, account_id: AccountId) -> list[GroupRecord]:
        """Return the groups ``account_id`` is a member of, oldest first."""
        ...

    async def add_members(
        self,
        group_id: GroupId,
        *,
        actor: AccountId,
        accounts: Sequence[AccountId],
        now: int,
        cap: int,
    ) -> GroupRecord:
        """Add accounts as members (those already in are left as they are).

        Raises:
            UnknownGroup, NotAdmin, UnknownMember, GroupFull.
        """
        ...

    async def remove_member(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, now: int
    ) -> GroupRecord | None:
        """Remove ``target`` (an admin's act, or ``actor == target`` to leave).

        When the last admin leaves, the longest-standing remaining member becomes admin; when
        the last member leaves, the group is deleted.

        Returns:
            The group after the change, or ``None`` when it was deleted.

        Raises:
            UnknownGroup, NotAdmin, UnknownMember.
        """
        ...

    async def set_role(
        self, group_id: GroupId, *, actor: AccountId, target: AccountId, role: Role, now: int
    ) -> GroupRecord:
        """Give ``target`` a role (an admin's act).

        Raises:
            UnknownGroup, NotAdmin, UnknownMember.
        """
        ...

    async def update_settings(
        self, group_id: GroupId, account_id: AccountId, settings: MemberSettings
    ) -> None:
        """Replace the member's own archive / mute / sound flags.

        Raises:
            UnknownGroup: no such group, or not a member.
        """
        ...

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
        """Enqueue ``envelope`` (its recipient fields are ignored) for every device of every
        member except ``sender``, in the same transaction that checks the membership: the
        mailbox rules of :meth:`MailboxStore.enqueue` (idempotent per device on the dedupe
        key, all or nothing, ``cap``), for the whole group at once.

        Returns:
            The devices that received a new envelope, with the envelopes where the engine
            reports them (see :meth:`MailboxStore.enqueue`).

        Raises:
            UnknownGroup: no such group, or the sender is not a member.
            MailboxFull: a recipient mailbox holds ``cap`` envelopes; nothing was enqueued.
        """
        ...

    async def fanout_devices(self, group_id: GroupId, sender: AccountId) -> list[DeviceRef]:
        """Every device of every member, the sender's included, as of now.

        Raises:
            UnknownGroup: no such group, or ``sender`` is not a member.
        """
        ...
