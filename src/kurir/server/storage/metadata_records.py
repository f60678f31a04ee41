"""Values of the metadata stores: settings, blocks, conversations, contacts, push subscriptions.

This module owns the typed records of the metadata the server keeps by design
(docs/metadata.md): who blocked whom, reachability and notification defaults, per-conversation
state and counts, the uploaded address book and push subscriptions. It holds no message
content and knows nothing of HTTP, WebSockets or SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from kurir.server.types import AccountId, DeviceId

__all__ = [
    "SOUNDS",
    "AccountSettings",
    "AvatarRecord",
    "BlockRecord",
    "ContactRecord",
    "ConversationRecord",
    "ConversationState",
    "PolicyView",
    "PushSubscription",
    "Reachability",
]

SOUNDS: Final = ("default", "none", "chime", "pop", "ding", "bell", "marimba", "kentongan")
"""Notification sounds a client may choose (names only: clients ship the audio)."""


class Reachability(StrEnum):
    """Who from *other apps* may start a conversation with an account."""

    EVERYONE = "everyone"
    CONTACTS = "contacts"
    NOBODY = "nobody"


class ConversationState(StrEnum):
    """The owner's view of a 1:1 conversation."""

    ACCEPTED = "accepted"
    """The owner started it, replied, accepted it, or the peer is a contact."""
    REQUEST = "request"
    """A stranger wrote first; delivered, waiting for the owner to accept or decline."""
    DECLINED = "declined"
    """The owner declined: further messages from the peer are dropped silently."""


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """Per-account settings; defaults apply while the account stored none."""

    reachability: Reachability
    default_sound: str = "default"
    default_muted: bool = False
    unarchive_on_message: bool = False
    display_name: str | None = None
    updated_at: int = 0

    def __post_init__(self) -> None:
        if self.default_sound not in SOUNDS:
            raise ValueError(f"unknown sound {self.default_sound!r}")
        if self.display_name is not None and not 1 <= len(self.display_name) <= 64:
            raise ValueError("display name must be 1..64 characters")


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The recipient-side facts the reachability rule needs about one sender."""

    reachability: Reachability | None
    blocked: bool
    state: ConversationState | None
    is_contact: bool


@dataclass(frozen=True, slots=True)
class AvatarRecord:
    """A normalised profile picture (PNG or JPEG re-encoded by the server, no metadata)."""

    content_type: str
    data: bytes
    updated_at: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """``account_id`` blocked ``blocked`` (an account of any app) at ``created_at``."""

    account_id: AccountId
    blocked: AccountId
    created_at: int


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """One side of a 1:1 conversation as the server keeps it (no content, only counts)."""

    account_id: AccountId
    peer: AccountId
    state: ConversationState
    archived: bool
    muted: bool | None
    """``None``: follow the account default."""
    sound: str | None
    """``None``: follow the account default."""
    sent: int
    received: int
    created_at: int
    last_activity: int


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """One uploaded address-book entry: an E.164 number or a normalised address."""

    account_id: AccountId
    entry: str
    added_at: int


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A device's Web Push subscription (RFC 8030 endpoint, RFC 8291 keys)."""

    account_id: AccountId
    device_id: DeviceId
    endpoint: str
    p256dh: str
    auth: str
    created_at: int
