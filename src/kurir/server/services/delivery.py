"""The metadata side of the send path: admit or drop, count, push to offline devices.

This module owns :class:`MetadataSendHooks`, the :class:`~kurir.server.services.policy.SendHooks`
that :class:`~kurir.server.services.messages.MessageService` calls for every send to another
account: before the enqueue (policy: deliver, deliver as a request, or drop silently) and
with the enqueue (counts and conversation state on both sides, :meth:`MetadataSendHooks.send_count`,
written by the mailbox store in the enqueue's transaction) and after the commit (one push per
offline recipient device, content-free, silent when muted, coalesced). It reads no envelope
body.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from kurir.server.connections import ConnectionRegistry
from kurir.server.services.conversations import ConversationService
from kurir.server.services.policy import Decision, PolicyService, Verdict
from kurir.server.services.push import PushPayload, PushService
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.metadata_records import ConversationState
from kurir.server.storage.records import DeviceRecord, SendCount
from kurir.server.types import AccountId, Clock, DeviceId, DeviceRef

__all__ = [
    "DeviceLister",
    "LocalPresence",
    "MetadataSendHooks",
    "Presence",
    "SettingsSync",
    "presence_of",
]

_log = logging.getLogger("kurir.server.delivery")


@runtime_checkable
class Presence(Protocol):
    """Knows which devices have a live connection, on this node or (several nodes) on any.

    :class:`kurir.server.routing_redis.RedisRouter` is one: it asks Redis which node holds
    each device.
    """

    async def connected(self, devices: Sequence[DeviceRef]) -> set[DeviceRef]:
        """Which of ``devices`` are connected now, found out in one batch. A device whose
        state cannot be known (Redis unreachable) is left out: it then gets a needless push
        rather than miss one."""
        ...


class LocalPresence:
    """:class:`Presence` of a single node: its own connection registry, no I/O."""

    def __init__(self, registry: ConnectionRegistry) -> None:
        self._registry = registry

    async def connected(self, devices: Sequence[DeviceRef]) -> set[DeviceRef]:
        """See :class:`Presence`."""
        return {d for d in devices if self._registry.is_connected(d)}


class _NoPresence:
    async def connected(self, devices: Sequence[DeviceRef]) -> set[DeviceRef]:
        return set()


def presence_of(router: object) -> Presence:
    """The presence a router can tell: its own answer if it knows other nodes' connections
    (a Redis router), its registry's for a single node; a router that knows neither makes
    every device count as offline (pushes are then only coalesced)."""
    if isinstance(router, Presence):
        return router
    if isinstance(router, ConnectionRegistry):
        return LocalPresence(router)
    return _NoPresence()


class MetadataSendHooks:
    """Policy, counts and push around each send.

    Args:
        policy: Who may reach whom.
        store: Where counts are kept.
        conversations: Sounds and mute flags for pushes.
        push: The push service.
        presence: Which devices are online (offline ones get a push).
        clock: Time source.
    """

    def __init__(
        self,
        policy: PolicyService,
        store: MetadataStore,
        conversations: ConversationService,
        push: PushService,
        presence: Presence,
        *,
        clock: Clock,
    ) -> None:
        self._policy = policy
        self._store = store
        self._conversations = conversations
        self._push = push
        self._presence = presence
        self._clock = clock

    async def admit(self, sender: AccountId, recipient: AccountId) -> Decision:
        """Decide by the recipient's policy."""
        return await self._policy.may_reach(sender, recipient)

    def send_count(self, sender: AccountId, recipient: AccountId, decision: Decision) -> SendCount:
        """The counts of an admitted send, for the mailbox store to write with the envelopes
        (once: a retried send enqueues nothing and counts nothing)."""
        state = (
            ConversationState.REQUEST
            if decision.verdict is Verdict.REQUEST
            else ConversationState.ACCEPTED
        )
        return SendCount(sender, recipient, state)

    async def accepted(
        self,
        sender: AccountId,
        recipient: AccountId,
        decision: Decision,
        woken: Sequence[DeviceRef],
    ) -> None:
        """Push the offline recipient devices (the counts were written with the enqueue)."""
        if not woken:
            return
        offline = await self._offline([d for d in woken if d.account_id == recipient])
        if not offline:
            return
        sound, silent = await self._conversations.notification(recipient, sender)
        payload = PushPayload(conversation=str(sender), sound=sound, silent=silent)
        for device in offline:
            if self._push.should_push(device):
                subscription = await self._store.push_subscription(
                    device.account_id, device.device_id
                )
                await self._push.wake(device, subscription, payload)

    async def _offline(self, devices: Sequence[DeviceRef]) -> list[DeviceRef]:
        """The devices among ``devices`` that would get a push: not coalesced away, and not
        connected to any node (one batched presence lookup for all of them)."""
        candidates = [d for d in devices if self._push.should_push(d)]
        if not candidates:
            return []
        online = await self._presence.connected(candidates)
        return [d for d in candidates if d not in online]


class DeviceLister(Protocol):
    """Lists an account's devices."""

    async def list_devices(self, account_id: AccountId) -> Sequence[DeviceRecord]:
        """The account's devices."""
        ...


class SettingsSync:
    """Tells an account's *other* devices that its synced settings changed (archive, mute,
    sound, reachability): a silent, content-free push of kind ``sync``; the devices then read
    ``GET /v1/conversations`` and ``GET /v1/settings``. Devices online over the WebSocket get
    it too: a push service delivers to a running app.

    Args:
        accounts: To list the account's devices.
        store: Push subscriptions.
        push: The push service (sync pushes are never coalesced away).
    """

    def __init__(self, accounts: DeviceLister, store: MetadataStore, push: PushService) -> None:
        self._accounts = accounts
        self._store = store
        self._push = push

    async def settings_changed(self, account_id: AccountId, by: DeviceId | None) -> None:
        """Push ``sync`` to every device of the account except ``by``."""
        payload = PushPayload(conversation="", sound="none", silent=True, kind="sync")
        for device in await self._accounts.list_devices(account_id):
            if device.device_id == by:
                continue
            ref = DeviceRef(account_id, device.device_id)
            subscription = await self._store.push_subscription(account_id, device.device_id)
            try:
                await self._push.provider.push(ref, subscription, payload)
            except Exception:
                _log.exception("push provider failed")
