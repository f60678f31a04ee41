"""Push for group messages: one content-free wake-up per offline member device.

This module owns what happens after a ``group_send`` committed, for member devices that are
not connected: a push carrying the group id as the conversation and the member's own sound,
silent while the member muted the group (``group_members.muted_until``) or muted everything
by default. The push machinery (coalescing, providers, subscriptions) and the account's
default sound are the metadata features' (issue 5); this module only decides per member. Which
devices are connected is asked in one batch of the router's presence
(`kurir.server.services.delivery.presence_of`): with several nodes, the Redis router knows the
devices connected to the other nodes too, and they get no push. It reads no envelope body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kurir.server.services.delivery import Presence
from kurir.server.services.push import PushPayload, PushService
from kurir.server.storage.groups import GroupId, GroupStore
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.types import AccountId, Clock, DeviceRef

__all__ = ["AccountDefaults", "DefaultSound", "GroupPush"]


class DefaultSound(Protocol):
    """An account's default notification sound and mute flag."""

    async def default_sound(self, account_id: AccountId) -> tuple[str, bool]:
        """(sound, muted by default)."""
        ...


class _Settings(Protocol):
    @property
    def default_sound(self) -> str: ...

    @property
    def default_muted(self) -> bool: ...


class _SettingsSource(Protocol):
    async def settings(self, account_id: AccountId) -> _Settings: ...


class AccountDefaults:
    """:class:`DefaultSound` over the metadata features' ``ConversationService.settings``."""

    def __init__(self, source: _SettingsSource) -> None:
        self._source = source

    async def default_sound(self, account_id: AccountId) -> tuple[str, bool]:
        """See :class:`DefaultSound`."""
        settings = await self._source.settings(account_id)
        return settings.default_sound, settings.default_muted


class GroupPush:
    """Pushes offline member devices after a group fan-out.

    Args:
        groups: The group store (members' own mute and sound flags).
        push: The push service (coalescing and provider).
        subscriptions: Where devices' push subscriptions are kept.
        presence: Which devices are connected, on any node (``presence_of(router)``).
        defaults: Accounts' default sound and mute.
        clock: Time source (``muted_until``).
    """

    def __init__(
        self,
        groups: GroupStore,
        push: PushService,
        subscriptions: MetadataStore,
        presence: Presence,
        defaults: DefaultSound,
        *,
        clock: Clock,
    ) -> None:
        self._groups = groups
        self._push = push
        self._subscriptions = subscriptions
        self._presence = presence
        self._defaults = defaults
        self._clock = clock

    async def fanned_out(
        self, group_id: GroupId, sender: AccountId, woken: Sequence[DeviceRef]
    ) -> None:
        """Push every offline device among ``woken`` (those that got the new envelope).

        Devices the push service would coalesce away are dropped first; the rest are looked
        up in one presence batch (one Redis round trip with several nodes).
        """
        candidates = [d for d in woken if self._push.should_push(d)]
        if not candidates:
            return
        online = await self._presence.connected(candidates)
        offline = [d for d in candidates if d not in online]
        if not offline:
            return
        group = await self._groups.get(group_id, sender)
        now = self._clock.now_ms()
        for device in offline:
            member = group.member(device.account_id)
            if member is None:
                continue
            sound, muted = await self._defaults.default_sound(device.account_id)
            if member.settings.sound is not None:
                sound = member.settings.sound
            silent = muted or member.settings.muted_until > now or sound == "none"
            payload = PushPayload(
                conversation=str(group_id), sound="none" if silent else sound, silent=silent
            )
            subscription = await self._subscriptions.push_subscription(
                device.account_id, device.device_id
            )
            await self._push.wake(device, subscription, payload)
