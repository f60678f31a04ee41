"""Messages: accepting sends into mailboxes, acknowledgements, and what a device reads.

This module owns the delivery rules (docs/protocol.md §Sending): the device-set check
(Signal's 409 mismatched / 410 stale), all-or-nothing durable enqueue idempotent on the
client's message id, explicit caps and expiry, delivery receipts on acknowledgement, and
reaching the recipients' connections after the commit: a :class:`Courier` (the single-node
connection registry) is handed the committed envelopes themselves, so a live connection sends
them without reading its mailbox; any other :class:`Notifier` is only told to wake them. The
conversation counts are written in the enqueue's own transaction (:class:`SendCount`). It
knows nothing of sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from kurir.server.errors import MismatchedDevices, Refused, StaleDevices
from kurir.server.services.accounts import AuthedDevice
from kurir.server.services.policy import Decision, SendHooks
from kurir.server.storage.errors import MailboxFull, UnknownDevice
from kurir.server.storage.protocols import AccountStore, MailboxStore
from kurir.server.storage.records import Enqueued, OutgoingEnvelope, SendCount, StoredEnvelope
from kurir.server.types import AccountId, Clock, DeviceId, DeviceRef
from kurir.wire.errors import ErrorCode
from kurir.wire.frames import DeviceMessage, EnvelopeType, Send

__all__ = ["Counted", "Courier", "MessageService", "Notifier", "Tally", "reach"]


class Notifier(Protocol):
    """Wakes a device's live connection (if any) so it reads its mailbox."""

    def wake(self, device: DeviceRef) -> None:
        """Signal that ``device``'s mailbox has new envelopes."""
        ...


@runtime_checkable
class Courier(Protocol):
    """A :class:`Notifier` that can also carry committed envelopes to live connections."""

    def hand_off(self, queued: Enqueued) -> None:
        """Give each device's new envelopes (``queued.envelopes``) to its live connection,
        which sends them without reading the mailbox; wake the devices without envelopes."""
        ...


@runtime_checkable
class Counted(Protocol):
    """Send hooks whose conversation counts the enqueue writes in its own transaction."""

    def send_count(self, sender: AccountId, recipient: AccountId, decision: Decision) -> SendCount:
        """The counts of one admitted send from ``sender`` to ``recipient``."""
        ...


class Tally(Protocol):
    """Counters the service bumps as it works (``kurir.server.metrics.MessageCounts``): plain
    attributes, so counting costs no call and no coroutine of its own on the message path."""

    accepted: int
    """``send`` frames accepted: returned without an error (queued, dropped by policy, or
    addressed to no other device)."""
    queued: int
    """Device copies in accepted ``send`` frames."""
    delivered: int
    """Envelopes read from mailboxes for a connection, or handed to one (:meth:`MessageService.
    handed_off`)."""
    acknowledged: int
    """Seqs in applied acknowledgements."""


def reach(notifier: Notifier, queued: Enqueued) -> None:
    """After a commit: hand the new envelopes to a :class:`Courier`, else wake each device."""
    if isinstance(notifier, Courier):
        notifier.hand_off(queued)
    else:
        for ref in queued:
            notifier.wake(ref)


class MessageService:
    """Routes envelopes between mailboxes.

    Args:
        accounts: To check recipient device sets.
        mailboxes: The mailbox store.
        notifier: Wakes live connections after commits.
        clock: Time source.
        mailbox_cap: Most envelopes per device mailbox.
        envelope_ttl_ms: Lifetime of an unacknowledged envelope.
        hooks: Policy, counts and push around each send to another account.
        tally: Counters to bump, if any.
    """

    def __init__(
        self,
        accounts: AccountStore,
        mailboxes: MailboxStore,
        notifier: Notifier,
        *,
        clock: Clock,
        mailbox_cap: int,
        envelope_ttl_ms: int,
        hooks: SendHooks | None = None,
        tally: Tally | None = None,
    ) -> None:
        self._tally = tally
        self._hooks = hooks  # policy (blocks, reachability), counts, push: services/delivery.py
        self._counted = hooks if isinstance(hooks, Counted) else None
        self._accounts = accounts
        self._mailboxes = mailboxes
        self._notifier = notifier
        self._courier = notifier if isinstance(notifier, Courier) else None
        self._clock = clock
        self._cap = mailbox_cap
        self._ttl = envelope_ttl_ms

    async def send(self, sender: AuthedDevice, frame: Send) -> None:
        """Durably enqueue one copy per recipient device; return once committed.

        Raises:
            Refused: ``unknown_account``, ``mismatched_devices`` (with ``missing``/``extra``),
                ``stale_devices`` (with ``stale``) or ``mailbox_full``; nothing was enqueued.
        """
        recipient = AccountId(frame.to)
        devices = await self._accounts.list_devices(recipient)
        if not devices:
            raise Refused(ErrorCode.UNKNOWN_ACCOUNT, "no such account")
        account = sender.ref.account_id
        own = recipient == account
        expected: dict[int, int] = {d.device_id: d.registration_id for d in devices}
        if own:
            expected.pop(sender.ref.device_id, None)
        messages = frame.messages
        # every device named once (the frame decoder checks), so as many copies as devices,
        # each with its device's registration id, is an exact match; else say what is wrong
        if len(messages) != len(expected) or any(
            expected.get(m.device) != m.registration_id for m in messages
        ):
            _check_devices(expected, messages)
        decision = None
        if self._hooks is not None and not own:
            decision = await self._hooks.admit(account, recipient)
            if not decision.allowed:
                self._accepted(frame)
                return  # dropped silently: the sender sees "sent", never "delivered"
        if not messages:
            self._accepted(frame)
            return
        sealed_source = EnvelopeType.UNIDENTIFIED_SENDER
        source_device = sender.ref.device_id
        source_address = str(sender.address)
        envelopes = [
            OutgoingEnvelope(
                recipient,
                DeviceId(m.device),
                frame.message_id,
                m.type,
                None if m.type == sealed_source else account,
                None if m.type == sealed_source else source_device,
                None if m.type == sealed_source else source_address,
                frame.message_id,
                frame.timestamp,
                m.body,
            )
            for m in messages
        ]
        count = None
        if self._counted is not None and decision is not None:
            count = self._counted.send_count(account, recipient, decision)
        now = self._clock.now_ms()
        try:
            woken = await self._mailboxes.enqueue(
                envelopes, now=now, expires_at=now + self._ttl, cap=self._cap, count=count
            )
        except MailboxFull:
            raise Refused(ErrorCode.MAILBOX_FULL, "the recipient's mailbox is full") from None
        except UnknownDevice:
            # a device vanished between the check and the commit; the sender refreshes
            raise Refused(ErrorCode.MISMATCHED_DEVICES, "the device list changed") from None
        self._reach(woken)
        if self._hooks is not None and decision is not None:
            await self._hooks.accepted(account, recipient, decision, woken)
        self._accepted(frame)

    def _accepted(self, frame: Send) -> None:
        tally = self._tally
        if tally is not None:
            tally.accepted += 1
            tally.queued += len(frame.messages)

    def _reach(self, queued: Enqueued) -> None:
        if self._courier is not None:
            self._courier.hand_off(queued)
        else:
            for ref in queued:
                self._notifier.wake(ref)

    async def acknowledge(self, device: AuthedDevice, seqs: Sequence[int]) -> None:
        """Delete acknowledged envelopes and send delivery receipts to their senders."""
        if not seqs:
            return
        now = self._clock.now_ms()
        woken = await self._mailboxes.acknowledge(
            device.account_id,
            device.device_id,
            seqs,
            now=now,
            expires_at=now + self._ttl,
            receipt_source_address=str(device.address),
        )
        self._reach(woken)
        if self._tally is not None:
            self._tally.acknowledged += len(seqs)

    async def last_seq(self, device: DeviceRef) -> int:
        """The highest seq assigned so far in the device's mailbox."""
        return await self._mailboxes.last_seq(device.account_id, device.device_id)

    async def fetch(self, device: DeviceRef, *, after_seq: int, limit: int) -> list[StoredEnvelope]:
        """Read unexpired envelopes after ``after_seq`` (for a connection to send: counted
        as delivered)."""
        batch = await self._mailboxes.fetch(
            device.account_id,
            device.device_id,
            after_seq=after_seq,
            limit=limit,
            now=self._clock.now_ms(),
        )
        if self._tally is not None:
            self._tally.delivered += len(batch)
        return batch

    def handed_off(self, count: int) -> None:
        """``count`` envelopes reached a connection without a mailbox read (counted as
        delivered)."""
        if self._tally is not None:
            self._tally.delivered += count

    async def take_expired_count(self, device: DeviceRef) -> int:
        """How many of the device's envelopes expired unread since last asked."""
        return await self._mailboxes.take_expired_count(device.account_id, device.device_id)

    async def expire(self) -> int:
        """Delete expired envelopes now; return how many."""
        return await self._mailboxes.expire(self._clock.now_ms())


def _check_devices(expected: dict[int, int], messages: Sequence[DeviceMessage]) -> None:
    """Raise what is wrong with a send's device set (Signal's 409 before 410).

    Raises:
        MismatchedDevices: Devices missing from ``messages``, or named but not expected.
        StaleDevices: Devices whose registration id is not the expected one.
    """
    given = {m.device: m for m in messages}
    missing = [d for d in expected if d not in given]
    extra = [d for d in given if d not in expected]
    if missing or extra:
        raise MismatchedDevices(missing, extra)
    stale = [d for d, m in given.items() if m.registration_id != expected[d]]
    if stale:
        raise StaleDevices(stale)
