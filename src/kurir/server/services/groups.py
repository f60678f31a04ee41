"""Groups: membership rules and the server-side fan-out of one Sender Key ciphertext.

This module owns the group policy (issue 6): who may create, add, remove, leave and promote;
the member cap (configuration, default 1,024); the hook through which blocks and cross-app
reachability refuse adding someone (:class:`AddPolicy`); and ``group_send``: the server's
membership list is the authority, so one ciphertext is enqueued, in one durable all-or-nothing
transaction, for every device of every member except the sending device. The server never
decrypts anything: bodies and avatars are opaque. It knows nothing of sockets or HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from kurir.server.errors import Refused
from kurir.server.services.accounts import AuthedDevice
from kurir.server.services.messages import Notifier, reach
from kurir.server.storage.errors import MailboxFull, UnknownDevice
from kurir.server.storage.groups import (
    GroupFull,
    GroupId,
    GroupRecord,
    GroupStore,
    MemberSettings,
    NotAdmin,
    Role,
    UnknownGroup,
    UnknownMember,
)
from kurir.server.storage.metadata_records import SOUNDS
from kurir.server.storage.records import OutgoingEnvelope
from kurir.server.types import AccountId, Clock, DeviceRef, Rng
from kurir.wire.errors import ErrorCode
from kurir.wire.frames import EnvelopeType, GroupSend

__all__ = ["AddPolicy", "AllowAll", "FanOutHook", "GroupService"]

_log = logging.getLogger("kurir.server.groups")


class AddPolicy(Protocol):
    """Whether ``actor`` may put ``target`` into a group (blocks, cross-app reachability).

    The composition root passes the metadata features' policy (issue 5:
    ``kurir.server.services.policy.GroupAddPolicy``); :class:`AllowAll` is for tests.
    """

    async def may_add(self, actor: AccountId, target: AccountId) -> bool:
        """Return False to refuse adding ``target`` (nothing is changed then)."""
        ...


class FanOutHook(Protocol):
    """Told about the devices that got a new group envelope (push to the offline ones)."""

    async def fanned_out(
        self, group_id: GroupId, sender: AccountId, woken: Sequence[DeviceRef]
    ) -> None:
        """Called after the commit; a failure here never fails the send."""
        ...


class AllowAll:
    """The policy without blocks or reachability settings: everyone may be added."""

    async def may_add(self, actor: AccountId, target: AccountId) -> bool:
        """Always True."""
        return True


def _refused(exc: Exception) -> Refused:
    match exc:
        case UnknownGroup():
            return Refused(ErrorCode.NOT_FOUND, "no such group")
        case NotAdmin():
            return Refused(ErrorCode.FORBIDDEN, "only group admins may do this")
        case GroupFull():
            return Refused(ErrorCode.GROUP_FULL, str(exc))
        case UnknownMember():
            return Refused(ErrorCode.UNKNOWN_ACCOUNT, str(exc))
    raise exc


class GroupService:
    """Group membership and fan-out.

    Args:
        groups: The group store (fan-out enqueues through it, into the mailboxes).
        notifier: Wakes live connections after a fan-out commits.
        clock: Time source.
        rng: Randomness for group ids.
        policy: Refuses adding blocked or unreachable accounts.
        member_cap: Most members per group.
        mailbox_cap: Most envelopes per device mailbox.
        envelope_ttl_ms: Lifetime of an unacknowledged envelope.
        after_fan_out: Pushes offline member devices after a fan-out committed.
    """

    def __init__(
        self,
        groups: GroupStore,
        notifier: Notifier,
        *,
        clock: Clock,
        rng: Rng,
        policy: AddPolicy,
        member_cap: int,
        mailbox_cap: int,
        envelope_ttl_ms: int,
        after_fan_out: FanOutHook | None = None,
    ) -> None:
        self._after = after_fan_out
        self._groups = groups
        self._notifier = notifier
        self._clock = clock
        self._rng = rng
        self._policy = policy
        self._cap = member_cap
        self._mailbox_cap = mailbox_cap
        self._ttl = envelope_ttl_ms

    @property
    def member_cap(self) -> int:
        """Most members per group."""
        return self._cap

    async def _check_policy(self, actor: AccountId, targets: Sequence[AccountId]) -> None:
        for target in targets:
            if target != actor and not await self._policy.may_add(actor, target):
                raise Refused(
                    ErrorCode.FORBIDDEN, "an account cannot be added (blocked or not reachable)"
                )

    async def create(
        self,
        caller: AuthedDevice,
        *,
        name: str,
        avatar: bytes | None,
        members: Sequence[AccountId],
    ) -> GroupRecord:
        """Create a group with the caller as admin.

        Raises:
            Refused: ``invalid_request`` (name), ``group_full``, ``unknown_account``,
                ``forbidden`` (blocked or unreachable).
        """
        if not name.strip():
            raise Refused(ErrorCode.INVALID_REQUEST, "$.name must not be blank")
        everyone = list(dict.fromkeys(members))
        if len({*everyone, caller.account_id}) > self._cap:
            raise Refused(ErrorCode.GROUP_FULL, f"a group has at most {self._cap} members")
        await self._check_policy(caller.account_id, everyone)
        raw = bytearray(self._rng.token_bytes(16))
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        group_id = GroupId(UUID(bytes=bytes(raw)))
        try:
            return await self._groups.create(
                group_id,
                name=name,
                avatar=avatar,
                creator=caller.account_id,
                members=everyone,
                now=self._clock.now_ms(),
                cap=self._cap,
            )
        except (GroupFull, UnknownMember) as exc:
            raise _refused(exc) from None

    async def get(self, caller: AuthedDevice, group_id: GroupId) -> GroupRecord:
        """The group, if the caller is a member (else ``not_found``)."""
        try:
            return await self._groups.get(group_id, caller.account_id)
        except UnknownGroup as exc:
            raise _refused(exc) from None

    async def list(self, caller: AuthedDevice) -> list[GroupRecord]:
        """The caller's groups."""
        return await self._groups.list_for(caller.account_id)

    async def add(
        self, caller: AuthedDevice, group_id: GroupId, accounts: Sequence[AccountId]
    ) -> GroupRecord:
        """Add members (admins only).

        Raises:
            Refused: ``not_found``, ``forbidden`` (not admin, or a target blocked /
                unreachable), ``group_full``, ``unknown_account``.
        """
        try:
            current = await self._groups.get(group_id, caller.account_id)
            member = current.member(caller.account_id)
            if member is None or member.role is not Role.ADMIN:
                raise NotAdmin("only admins may add")
            await self._check_policy(
                caller.account_id, [a for a in accounts if current.member(a) is None]
            )
            return await self._groups.add_members(
                group_id,
                actor=caller.account_id,
                accounts=accounts,
                now=self._clock.now_ms(),
                cap=self._cap,
            )
        except (UnknownGroup, NotAdmin, GroupFull, UnknownMember) as exc:
            raise _refused(exc) from None

    async def remove(
        self, caller: AuthedDevice, group_id: GroupId, target: AccountId
    ) -> GroupRecord | None:
        """Remove a member (admins), or leave (``target`` is the caller).

        Returns:
            The group after the change, or ``None`` when the last member left.

        Raises:
            Refused: ``not_found``, ``forbidden``, ``unknown_account`` (not a member).
        """
        try:
            return await self._groups.remove_member(
                group_id, actor=caller.account_id, target=target, now=self._clock.now_ms()
            )
        except (UnknownGroup, NotAdmin, UnknownMember) as exc:
            raise _refused(exc) from None

    async def promote(
        self, caller: AuthedDevice, group_id: GroupId, target: AccountId
    ) -> GroupRecord:
        """Make a member an admin (admins only)."""
        try:
            return await self._groups.set_role(
                group_id,
                actor=caller.account_id,
                target=target,
                role=Role.ADMIN,
                now=self._clock.now_ms(),
            )
        except (UnknownGroup, NotAdmin, UnknownMember) as exc:
            raise _refused(exc) from None

    async def update_settings(
        self, caller: AuthedDevice, group_id: GroupId, settings: MemberSettings
    ) -> None:
        """Replace the caller's own archive / mute / sound flags for the group.

        Raises:
            Refused: ``invalid_request`` (a sound that is not in the catalogue of sounds),
                ``not_found``.
        """
        if settings.sound is not None and settings.sound not in SOUNDS:
            raise Refused(
                ErrorCode.INVALID_REQUEST, f"$.sound: unknown value, expected one of {list(SOUNDS)}"
            )
        try:
            await self._groups.update_settings(group_id, caller.account_id, settings)
        except UnknownGroup as exc:
            raise _refused(exc) from None

    async def send(self, sender: AuthedDevice, frame: GroupSend) -> int:
        """Enqueue one Sender Key ciphertext for every member device but the sender's own.

        All copies commit in one transaction before this returns (idempotent per recipient
        device on ``message_id``, as :meth:`MessageService.send`).

        Returns:
            The number of devices that got a new envelope (0 for a retried message).

        Raises:
            Refused: ``not_a_member`` (no such group, or the sender is not a member),
                ``mailbox_full`` (nothing was enqueued).
        """
        template = OutgoingEnvelope(
            sender.account_id,  # the recipient fields are filled in per member device
            sender.device_id,
            frame.message_id,
            EnvelopeType.SENDER_KEY,
            sender.account_id,
            sender.device_id,
            str(sender.address),
            frame.message_id,
            frame.timestamp,
            frame.body,
        )
        now = self._clock.now_ms()
        try:
            woken = await self._groups.fan_out(
                GroupId(frame.group_id),
                sender.ref,
                template,
                now=now,
                expires_at=now + self._ttl,
                cap=self._mailbox_cap,
            )
        except UnknownGroup:
            raise Refused(ErrorCode.NOT_A_MEMBER, "not a member of this group") from None
        except MailboxFull:
            raise Refused(ErrorCode.MAILBOX_FULL, "a member's mailbox is full") from None
        except UnknownDevice:
            # a device vanished meanwhile (in-memory engine); the sender sends again
            raise Refused(ErrorCode.MISMATCHED_DEVICES, "the group's devices changed") from None
        reach(self._notifier, woken)
        if self._after is not None and woken:
            try:
                await self._after.fanned_out(GroupId(frame.group_id), sender.account_id, woken)
            except Exception:  # the message is committed; a failed push must not undo that
                _log.exception("group push failed")
        return len(woken)
