"""HTTP bodies of the metadata routes: settings, blocks, requests, conversations, contacts,
profiles, push subscriptions and the transparency report (docs/protocol.md §11).

This module owns the typed JSON shapes of those routes, shared by the server and the client
SDK. Values are checked by the server's services (unknown values give ``invalid_request``);
here only shapes and sizes. Bytes travel as standard base64 with padding.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from uuid import UUID

import msgspec

from kurir.wire.limits import MAX_ADDRESS_LENGTH

__all__ = [
    "MAX_AVATAR_UPLOAD_BYTES",
    "MAX_CONTACTS_PER_UPLOAD",
    "AvatarUpload",
    "BlockEntry",
    "BlockList",
    "ContactHit",
    "ContactList",
    "ContactUpload",
    "ContactUploadResult",
    "ConversationFlags",
    "ConversationInfo",
    "ConversationList",
    "PeerRef",
    "ProfileInfo",
    "ProfileUpdate",
    "PushSubscriptionBody",
    "Report",
    "RequestEntry",
    "RequestList",
    "SettingsBody",
    "SettingsUpdate",
]

MAX_CONTACTS_PER_UPLOAD: Final = 1000
"""Entries per address-book upload (and the most an address book holds)."""
MAX_AVATAR_UPLOAD_BYTES: Final = 512 * 1024
"""Largest profile picture accepted, before normalisation."""

Address = Annotated[str, msgspec.Meta(max_length=MAX_ADDRESS_LENGTH)]
Choice = Annotated[str, msgspec.Meta(max_length=32)]


class PeerRef(msgspec.Struct, frozen=True, omit_defaults=True):
    """Another account, by ``address`` or by ``account_id`` (exactly one)."""

    address: Address | None = None
    account_id: UUID | None = None


class SettingsBody(msgspec.Struct, frozen=True):
    """The account's settings."""

    reachability: str
    default_sound: str
    default_muted: bool
    unarchive_on_message: bool
    sounds: list[str]


class SettingsUpdate(msgspec.Struct, frozen=True, omit_defaults=True):
    """Settings to change; absent ones stay."""

    reachability: Choice | None = None
    default_sound: Choice | None = None
    default_muted: bool | None = None
    unarchive_on_message: bool | None = None


class BlockEntry(msgspec.Struct, frozen=True):
    """One block."""

    account_id: UUID
    address: str | None
    created: int


class BlockList(msgspec.Struct, frozen=True):
    """The caller's blocks."""

    blocks: list[BlockEntry]


class RequestEntry(msgspec.Struct, frozen=True):
    """A pending message request."""

    account_id: UUID
    address: str | None
    received: int
    created: int
    last_activity: int


class RequestList(msgspec.Struct, frozen=True):
    """The caller's pending message requests."""

    requests: list[RequestEntry]


class ConversationInfo(msgspec.Struct, frozen=True):
    """One 1:1 conversation as the server keeps it."""

    account_id: UUID
    address: str | None
    state: str
    archived: bool
    muted: bool | None
    sound: str | None
    sent: int
    received: int
    created: int
    last_activity: int


class ConversationList(msgspec.Struct, frozen=True):
    """The caller's conversations, most recent activity first."""

    conversations: list[ConversationInfo]


class ConversationFlags(msgspec.Struct, frozen=True, omit_defaults=True):
    """Flags to change; absent ones stay. ``muted``: on/off/inherit; ``sound``: a name or
    ``inherit``."""

    archived: bool | None = None
    muted: Choice | None = None
    sound: Choice | None = None


class ContactUpload(msgspec.Struct, frozen=True, omit_defaults=True):
    """An address book: phone numbers in any format (national ones need ``region``, an ISO
    3166 country code such as ``ID``) or full addresses (``instagram:@rina``)."""

    entries: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]],
        msgspec.Meta(max_length=MAX_CONTACTS_PER_UPLOAD),
    ]
    region: Annotated[str, msgspec.Meta(min_length=2, max_length=2)] | None = None


class ContactHit(msgspec.Struct, frozen=True):
    """An uploaded entry that is registered and reachable for the caller."""

    entry: str
    address: str
    account_id: UUID


class ContactUploadResult(msgspec.Struct, frozen=True):
    """What the upload found; ``stored`` entries are kept as the caller's contact list."""

    stored: list[str]
    found: list[ContactHit]


class ContactList(msgspec.Struct, frozen=True):
    """The stored address book."""

    entries: list[str]


class ProfileInfo(msgspec.Struct, frozen=True):
    """A profile as the caller may see it."""

    account_id: UUID
    display_name: str | None
    avatar: bytes | None
    avatar_type: str | None


class ProfileUpdate(msgspec.Struct, frozen=True):
    """A new display name (``null`` removes it)."""

    display_name: Annotated[str, msgspec.Meta(max_length=256)] | None


class AvatarUpload(msgspec.Struct, frozen=True):
    """A profile picture (PNG, JPEG, WebP or GIF), at most 512 KiB."""

    image: Annotated[bytes, msgspec.Meta(max_length=MAX_AVATAR_UPLOAD_BYTES)]


class PushSubscriptionBody(msgspec.Struct, frozen=True):
    """A Web Push subscription of the calling device (as a browser's ``PushSubscription``)."""

    endpoint: Annotated[str, msgspec.Meta(max_length=2048)]
    p256dh: Annotated[str, msgspec.Meta(max_length=256)]
    auth: Annotated[str, msgspec.Meta(max_length=256)]


class Report(msgspec.Struct, frozen=True):
    """The transparency report: every stored item about the caller, by table.

    ``tables`` maps a table name to its rows about the caller, each row a map from column
    name to value; secrets and ciphertext are shown as their size only.
    """

    generated: int
    tables: dict[str, list[dict[str, Any]]]
