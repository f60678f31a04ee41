"""Push for group messages: one content-free wake-up per offline member device.

This module owns what happens after a ``group_send`` committed, for member devices that are
not connected: a push carrying the group id as the conversation and the member's own sound,
silent while the member muted the group (``group_members.muted_until``) or muted everything
by default. The push machinery (coalescing, providers, subscriptions) and the account's
default sound are the metadata features' (issue 5); this module only decides per member. It
reads no envelope body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kurir.server.connections import ConnectionRegistry
from kurir.server.services.push import PushPayload, PushService
from kurir.server.storage.groups import GroupId, GroupStore
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.types import AccountId, Clock, DeviceRef

__all__ = ["AccountDefaults", "DefaultSound", "GroupPush", "Presence", "RegistryPresence"]


class Presence(Protocol):
    """Knows which devices have a live connection."""

    def is_connected(self, device: DeviceRef) -> bool:
        """Whether ``device`` is connected (then it needs no push)."""
        ...


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


class RegistryPresence:
    """:class:`Presence` from this node's connection registry; a router that is not a local
    registry (several nodes) knows no presence: every device counts as offline and pushes
    are only coalesced."""

    def __init__(self, router: object) -> None:
        self._registry = router if isinstance(router, ConnectionRegistry) else None

    def is_connected(self, device: DeviceRef) -> bool:
        """See :class:`Presence`."""
        return self._registry is not None and self._registry.is_connected(device)


class GroupPush:
    """Pushes offline member devices after a group fan-out.

    Args:
        groups: The group store (members' own mute and sound flags).
        push: The push service (coalescing and provider).
        subscriptions: Where devices' push subscriptions are kept.
        presence: Which devices are connected.
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
        """Push every offline device among ``woken`` (those that got the new envelope)."""
        offline = [
            d for d in woken if not self._presence.is_connected(d) and self._push.should_push(d)
        ]
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
