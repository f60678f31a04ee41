"""Conversations and settings: archive, mute, notification sound, reachability, counts.

This module owns the per-account settings (reachability, default sound and mute, whether a
new message unarchives) and the per-conversation flags (archived, muted, sound) that the
server keeps so every device of the user sees the same state, and the counts the send path
records (messages sent and received, created, last activity), without reading anything.
Values are checked here: unknown settings values are refused with ``invalid_request`` and
change nothing. It knows nothing of HTTP or sockets.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final, Protocol

from kurir.server.errors import Refused
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.metadata_records import (
    SOUNDS,
    AccountSettings,
    ConversationRecord,
    Reachability,
)
from kurir.server.types import AccountId, Clock, DeviceId
from kurir.wire.errors import ErrorCode

__all__ = ["INHERIT", "ConversationService", "SettingsListener"]

INHERIT: Final = "inherit"
"""The value that makes a conversation follow the account's default again."""
_MUTE: Final = {"on": True, "off": False, INHERIT: None}


class SettingsListener(Protocol):
    """Told when an account's synced state changed (to tell its other devices)."""

    async def settings_changed(self, account_id: AccountId, by: DeviceId | None) -> None:
        """The account's settings or a conversation's flags changed (by device ``by``)."""
        ...


def _check(field: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise Refused(
            ErrorCode.INVALID_REQUEST, f"$.{field}: unknown value, expected one of {list(allowed)}"
        )


class ConversationService:
    """Settings and per-conversation flags of an account.

    Args:
        store: The metadata store.
        default_reachability: The reachability of accounts that never chose one.
        clock: Time source.
        listener: Told after every change (settings sync to the account's devices).
    """

    def __init__(
        self,
        store: MetadataStore,
        *,
        default_reachability: Reachability,
        clock: Clock,
        listener: SettingsListener | None = None,
    ) -> None:
        self._store = store
        self._default = default_reachability
        self._clock = clock
        self.listener = listener

    async def settings(self, account_id: AccountId) -> AccountSettings:
        """The account's settings (defaults if never changed)."""
        return await self._store.settings(account_id, default=self._default)

    async def update_settings(
        self,
        account_id: AccountId,
        *,
        reachability: str | None = None,
        default_sound: str | None = None,
        default_muted: bool | None = None,
        unarchive_on_message: bool | None = None,
        by: DeviceId | None = None,
    ) -> AccountSettings:
        """Change some settings; ``None`` leaves one as it is.

        Raises:
            Refused: ``invalid_request`` naming the field with an unknown value.
        """
        if reachability is not None:
            _check("reachability", reachability, [r.value for r in Reachability])
        if default_sound is not None:
            _check("default_sound", default_sound, SOUNDS)
        current = await self.settings(account_id)
        updated = replace(
            current,
            reachability=current.reachability
            if reachability is None
            else Reachability(reachability),
            default_sound=current.default_sound if default_sound is None else default_sound,
            default_muted=current.default_muted if default_muted is None else default_muted,
            unarchive_on_message=current.unarchive_on_message
            if unarchive_on_message is None
            else unarchive_on_message,
            updated_at=self._clock.now_ms(),
        )
        await self._store.put_settings(account_id, updated)
        await self._changed(account_id, by)
        return updated

    async def set_display_name(self, account_id: AccountId, name: str | None) -> None:
        """Store the already validated display name (``None`` removes it)."""
        current = await self.settings(account_id)
        await self._store.put_settings(
            account_id, replace(current, display_name=name, updated_at=self._clock.now_ms())
        )
        await self._changed(account_id, None)

    async def conversations(self, account_id: AccountId) -> list[ConversationRecord]:
        """Every conversation of the account, most recent activity first."""
        return await self._store.conversations(account_id)

    async def set_flags(
        self,
        account_id: AccountId,
        peer: AccountId,
        *,
        archived: bool | None = None,
        muted: str | None = None,
        sound: str | None = None,
        by: DeviceId | None = None,
    ) -> ConversationRecord:
        """Change a conversation's archive/mute/sound; ``None`` leaves a flag as it is.

        Args:
            muted: ``on``, ``off`` or ``inherit`` (follow the account default).
            sound: A sound name or ``inherit``.

        Raises:
            Refused: ``invalid_request`` for unknown values, ``not_found`` for no such
                conversation.
        """
        if muted is not None:
            _check("muted", muted, list(_MUTE))
        if sound is not None:
            _check("sound", sound, [*SOUNDS, INHERIT])
        row = await self._store.conversation(account_id, peer)
        if row is None:
            raise Refused(ErrorCode.NOT_FOUND, "no conversation with that account")
        new_archived = row.archived if archived is None else archived
        new_muted = row.muted if muted is None else _MUTE[muted]
        new_sound = row.sound if sound is None else (None if sound == INHERIT else sound)
        await self._store.set_flags(
            account_id, peer, archived=new_archived, muted=new_muted, sound=new_sound
        )
        await self._changed(account_id, by)
        return replace(row, archived=new_archived, muted=new_muted, sound=new_sound)

    async def notification(self, account_id: AccountId, peer: AccountId) -> tuple[str, bool]:
        """The sound and whether the push is silent for a message from ``peer``."""
        settings = await self.settings(account_id)
        row = await self._store.conversation(account_id, peer)
        muted = settings.default_muted if row is None or row.muted is None else row.muted
        sound = settings.default_sound if row is None or row.sound is None else row.sound
        if muted or sound == "none":
            return "none", True
        return sound, False

    async def _changed(self, account_id: AccountId, by: DeviceId | None) -> None:
        if self.listener is not None:
            await self.listener.settings_changed(account_id, by)
