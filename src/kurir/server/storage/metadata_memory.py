"""The in-memory reference implementation of :class:`MetadataStore`.

This module owns the reference semantics of the metadata store: plain dictionaries, every
method atomic because it never awaits. The SQLite store is held to the same behaviour by
tests/server/test_metadata_storage.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from kurir.server.storage.metadata_records import (
    AccountSettings,
    AvatarRecord,
    BlockRecord,
    ContactRecord,
    ConversationRecord,
    ConversationState,
    PolicyView,
    PushSubscription,
    Reachability,
)
from kurir.server.types import AccountId, DeviceId

__all__ = ["MemoryMetadataStore"]


class MemoryMetadataStore:
    """Metadata in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._settings: dict[AccountId, AccountSettings] = {}
        self._avatars: dict[AccountId, AvatarRecord] = {}
        self._blocks: dict[AccountId, dict[AccountId, BlockRecord]] = {}
        self._conversations: dict[AccountId, dict[AccountId, ConversationRecord]] = {}
        self._contacts: dict[AccountId, list[ContactRecord]] = {}
        self._push: dict[tuple[AccountId, DeviceId], PushSubscription] = {}

    async def settings(self, account_id: AccountId, *, default: Reachability) -> AccountSettings:
        """See :class:`MetadataStore`."""
        return self._settings.get(account_id) or AccountSettings(default)

    async def policy_view(
        self, owner: AccountId, peer: AccountId, peer_keys: Sequence[str]
    ) -> PolicyView:
        """See :class:`MetadataStore`."""
        settings = self._settings.get(owner)
        row = self._conversations.get(owner, {}).get(peer)
        mine = {c.entry for c in self._contacts.get(owner, [])}
        return PolicyView(
            None if settings is None else settings.reachability,
            peer in self._blocks.get(owner, {}),
            None if row is None else row.state,
            any(k in mine for k in peer_keys),
        )

    async def stored_settings(self, account_id: AccountId) -> AccountSettings | None:
        """See :class:`MetadataStore`."""
        return self._settings.get(account_id)

    async def put_settings(self, account_id: AccountId, settings: AccountSettings) -> None:
        """See :class:`MetadataStore`."""
        self._settings[account_id] = settings

    async def avatar(self, account_id: AccountId) -> AvatarRecord | None:
        """See :class:`MetadataStore`."""
        return self._avatars.get(account_id)

    async def put_avatar(self, account_id: AccountId, avatar: AvatarRecord | None) -> None:
        """See :class:`MetadataStore`."""
        if avatar is None:
            self._avatars.pop(account_id, None)
        else:
            self._avatars[account_id] = avatar

    async def block(self, account_id: AccountId, target: AccountId, *, now: int) -> None:
        """See :class:`MetadataStore`."""
        self._blocks.setdefault(account_id, {}).setdefault(
            target, BlockRecord(account_id, target, now)
        )

    async def unblock(self, account_id: AccountId, target: AccountId) -> bool:
        """See :class:`MetadataStore`."""
        return self._blocks.get(account_id, {}).pop(target, None) is not None

    async def is_blocked(self, account_id: AccountId, target: AccountId) -> bool:
        """See :class:`MetadataStore`."""
        return target in self._blocks.get(account_id, {})

    async def blocks(self, account_id: AccountId) -> list[BlockRecord]:
        """See :class:`MetadataStore`."""
        return sorted(self._blocks.get(account_id, {}).values(), key=lambda b: b.created_at)

    async def conversation(
        self, account_id: AccountId, peer: AccountId
    ) -> ConversationRecord | None:
        """See :class:`MetadataStore`."""
        return self._conversations.get(account_id, {}).get(peer)

    async def conversations(self, account_id: AccountId) -> list[ConversationRecord]:
        """See :class:`MetadataStore`."""
        rows = self._conversations.get(account_id, {}).values()
        return sorted(rows, key=lambda c: (-c.last_activity, str(c.peer)))

    def _row(
        self, account_id: AccountId, peer: AccountId, state: ConversationState, now: int
    ) -> ConversationRecord:
        return self._conversations.setdefault(account_id, {}).get(peer) or ConversationRecord(
            account_id, peer, state, False, None, None, 0, 0, now, now
        )

    async def set_state(
        self, account_id: AccountId, peer: AccountId, state: ConversationState, *, now: int
    ) -> None:
        """See :class:`MetadataStore`."""
        row = self._row(account_id, peer, state, now)
        self._conversations[account_id][peer] = replace(row, state=state)

    async def set_flags(
        self,
        account_id: AccountId,
        peer: AccountId,
        *,
        archived: bool,
        muted: bool | None,
        sound: str | None,
    ) -> bool:
        """See :class:`MetadataStore`."""
        row = self._conversations.get(account_id, {}).get(peer)
        if row is None:
            return False
        self._conversations[account_id][peer] = replace(
            row, archived=archived, muted=muted, sound=sound
        )
        return True

    async def record_send(
        self,
        sender: AccountId,
        recipient: AccountId,
        *,
        recipient_state: ConversationState,
        now: int,
    ) -> None:
        """See :class:`MetadataStore`."""
        mine = self._row(sender, recipient, ConversationState.ACCEPTED, now)
        self._conversations[sender][recipient] = replace(
            mine, state=ConversationState.ACCEPTED, sent=mine.sent + 1, last_activity=now
        )
        theirs = self._row(recipient, sender, recipient_state, now)
        settings = self._settings.get(recipient)
        unarchive = settings is not None and settings.unarchive_on_message
        self._conversations[recipient][sender] = replace(
            theirs,
            received=theirs.received + 1,
            last_activity=now,
            archived=theirs.archived and not unarchive,
        )

    async def replace_contacts(
        self, account_id: AccountId, entries: Sequence[str], *, now: int
    ) -> None:
        """See :class:`MetadataStore`."""
        self._contacts[account_id] = [ContactRecord(account_id, e, now) for e in entries]

    async def contacts(self, account_id: AccountId) -> list[ContactRecord]:
        """See :class:`MetadataStore`."""
        return list(self._contacts.get(account_id, []))

    async def has_contact(self, account_id: AccountId, entries: Sequence[str]) -> bool:
        """See :class:`MetadataStore`."""
        mine = {c.entry for c in self._contacts.get(account_id, [])}
        return any(e in mine for e in entries)

    async def put_push(self, subscription: PushSubscription) -> None:
        """See :class:`MetadataStore`."""
        self._push[(subscription.account_id, subscription.device_id)] = subscription

    async def push_subscription(
        self, account_id: AccountId, device_id: DeviceId
    ) -> PushSubscription | None:
        """See :class:`MetadataStore`."""
        return self._push.get((account_id, device_id))

    async def push_subscriptions(self, account_id: AccountId) -> list[PushSubscription]:
        """See :class:`MetadataStore`."""
        return sorted(
            (s for (a, _), s in self._push.items() if a == account_id), key=lambda s: s.device_id
        )

    async def delete_push(self, account_id: AccountId, device_id: DeviceId) -> bool:
        """See :class:`MetadataStore`."""
        return self._push.pop((account_id, device_id), None) is not None

    async def report_rows(self, account_id: AccountId) -> dict[str, list[dict[str, object]]] | None:
        """See :class:`MetadataStore`: ``None`` (the service assembles the report)."""
        return None
