"""The metadata side of the send path: admit or drop, count, push to offline devices.

This module owns :class:`MetadataSendHooks`, the :class:`~kurir.server.services.policy.SendHooks`
that :class:`~kurir.server.services.messages.MessageService` calls for every send to another
account: before the enqueue (policy: deliver, deliver as a request, or drop silently) and
after the commit (counts and conversation state on both sides; one push per offline
recipient device, content-free, silent when muted, coalesced). It reads no envelope body.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from kurir.server.services.conversations import ConversationService
from kurir.server.services.policy import Decision, PolicyService, Verdict
from kurir.server.services.push import PushPayload, PushService
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.metadata_records import ConversationState
from kurir.server.storage.records import DeviceRecord
from kurir.server.types import AccountId, Clock, DeviceId, DeviceRef

__all__ = ["DeviceLister", "MetadataSendHooks", "Presence", "SettingsSync"]

_log = logging.getLogger("kurir.server.delivery")


class Presence(Protocol):
    """Knows which devices have a live connection."""

    def is_connected(self, device: DeviceRef) -> bool:
        """Whether ``device`` is connected now."""
        ...


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

    async def accepted(
        self,
        sender: AccountId,
        recipient: AccountId,
        decision: Decision,
        woken: Sequence[DeviceRef],
    ) -> None:
        """Count the message (once: retries enqueue nothing and wake nobody) and push."""
        if not woken:
            return
        state = (
            ConversationState.REQUEST
            if decision.verdict is Verdict.REQUEST
            else ConversationState.ACCEPTED
        )
        await self._store.record_send(
            sender, recipient, recipient_state=state, now=self._clock.now_ms()
        )
        offline = [
            d for d in woken if d.account_id == recipient and not self._presence.is_connected(d)
        ]
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
