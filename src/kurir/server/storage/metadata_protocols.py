"""The metadata storage Protocol: settings, profiles, blocks, conversations, contacts, push.

This module owns the contract that every engine's metadata store fulfils (memory, SQLite;
PostgreSQL mirrors migration 0004). Each method is one transaction. Rows are keyed by the
owning account id first. The store never sees message content: only the metadata listed in
docs/metadata.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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

__all__ = ["MetadataStore", "PolicyViewReader"]


class MetadataStore(Protocol):
    """Everything the server keeps about users beyond accounts, keys and mailboxes."""

    async def settings(self, account_id: AccountId, *, default: Reachability) -> AccountSettings:
        """The account's settings; defaults (with ``default`` reachability) if none stored."""
        ...

    async def stored_settings(self, account_id: AccountId) -> AccountSettings | None:
        """The account's stored settings row, or ``None`` (transparency report)."""
        ...

    async def put_settings(self, account_id: AccountId, settings: AccountSettings) -> None:
        """Store the account's settings (replacing them)."""
        ...

    async def avatar(self, account_id: AccountId) -> AvatarRecord | None:
        """The account's normalised profile picture, or ``None``."""
        ...

    async def put_avatar(self, account_id: AccountId, avatar: AvatarRecord | None) -> None:
        """Replace (or with ``None`` delete) the profile picture."""
        ...

    async def block(self, account_id: AccountId, target: AccountId, *, now: int) -> None:
        """``account_id`` blocks ``target`` (idempotent: the first time is kept)."""
        ...

    async def unblock(self, account_id: AccountId, target: AccountId) -> bool:
        """Remove a block; return whether there was one."""
        ...

    async def is_blocked(self, account_id: AccountId, target: AccountId) -> bool:
        """Whether ``account_id`` blocked ``target``."""
        ...

    async def blocks(self, account_id: AccountId) -> list[BlockRecord]:
        """Every block the account made, oldest first."""
        ...

    async def conversation(
        self, account_id: AccountId, peer: AccountId
    ) -> ConversationRecord | None:
        """The account's side of its conversation with ``peer``."""
        ...

    async def conversations(self, account_id: AccountId) -> list[ConversationRecord]:
        """Every conversation of the account, most recent activity first."""
        ...

    async def set_state(
        self, account_id: AccountId, peer: AccountId, state: ConversationState, *, now: int
    ) -> None:
        """Set the conversation's state, creating the row (zero counts) if needed."""
        ...

    async def set_flags(
        self,
        account_id: AccountId,
        peer: AccountId,
        *,
        archived: bool,
        muted: bool | None,
        sound: str | None,
    ) -> bool:
        """Replace the archive/mute/sound flags; return whether the conversation exists."""
        ...

    async def record_send(
        self,
        sender: AccountId,
        recipient: AccountId,
        *,
        recipient_state: ConversationState,
        now: int,
    ) -> None:
        """Count one delivered message, atomically on both sides.

        The sender's side gets ``sent + 1`` and becomes accepted (writing to someone accepts
        their replies); the recipient's side gets ``received + 1`` and, if it is new, the
        state ``recipient_state``. Both get ``last_activity = now``. A recipient side that is
        archived is unarchived only if the recipient's settings say so.
        """
        ...

    async def replace_contacts(
        self, account_id: AccountId, entries: Sequence[str], *, now: int
    ) -> None:
        """Replace the uploaded address book (normalised entries, no duplicates)."""
        ...

    async def contacts(self, account_id: AccountId) -> list[ContactRecord]:
        """The uploaded address book in entry order."""
        ...

    async def has_contact(self, account_id: AccountId, entries: Sequence[str]) -> bool:
        """Whether any of ``entries`` is in the account's address book."""
        ...

    async def put_push(self, subscription: PushSubscription) -> None:
        """Store (replace) a device's push subscription (deleted with the device)."""
        ...

    async def push_subscription(
        self, account_id: AccountId, device_id: DeviceId
    ) -> PushSubscription | None:
        """The device's push subscription, or ``None``."""
        ...

    async def push_subscriptions(self, account_id: AccountId) -> list[PushSubscription]:
        """Every push subscription of the account's devices."""
        ...

    async def delete_push(self, account_id: AccountId, device_id: DeviceId) -> bool:
        """Forget a device's push subscription; return whether there was one."""
        ...

    async def report_rows(self, account_id: AccountId) -> dict[str, list[dict[str, object]]] | None:
        """Every stored row about the account, by table and column, read in one transaction
        (transparency report); ``None`` when the engine has no tables to read (memory: the
        report service assembles it from the stores instead)."""
        ...


@runtime_checkable
class PolicyViewReader(Protocol):
    """An optional fast path of a metadata store: the send path's policy facts in one read.
    Stores without it are read with several :class:`MetadataStore` calls instead."""

    async def policy_view(
        self, owner: AccountId, peer: AccountId, peer_keys: Sequence[str]
    ) -> PolicyView:
        """What the reachability rule needs, read in one transaction: the owner's stored
        reachability (``None``: the default), whether the owner blocked ``peer``, the owner's
        conversation state with ``peer`` and whether any of ``peer_keys`` is in the owner's
        address book."""
        ...
