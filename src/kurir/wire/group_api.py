"""HTTP bodies of the group routes (docs/protocol.md §Groups), JSON via msgspec.

This module owns the typed JSON bodies of ``/v1/groups``: creating a group, changing its
members and roles, a member's own archive / mute / sound settings, and the group as the server
describes it to a member. The avatar travels as base64 of opaque bytes (at most
`MAX_AVATAR_BYTES`): clients put an encrypted image or a reference to an uploaded blob in it;
the server never interprets it. It knows nothing of transports.
"""

from __future__ import annotations

from typing import Annotated, Final
from uuid import UUID

import msgspec

__all__ = [
    "MAX_AVATAR_BYTES",
    "MAX_GROUP_NAME_CHARS",
    "AddMembersRequest",
    "CreateGroupRequest",
    "GroupInfo",
    "GroupList",
    "GroupMemberInfo",
    "GroupSettings",
    "PromoteRequest",
]

MAX_GROUP_NAME_CHARS: Final = 128
"""Longest group name, in characters."""
MAX_AVATAR_BYTES: Final = 64 * 1024
"""Largest group avatar (opaque bytes)."""
MAX_MEMBERS_PER_REQUEST: Final = 1024
"""Most account ids in one create or add request (the configured cap may be lower)."""

GroupName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_GROUP_NAME_CHARS)]
Avatar = Annotated[bytes, msgspec.Meta(max_length=MAX_AVATAR_BYTES)]
SoundName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class CreateGroupRequest(msgspec.Struct, frozen=True):
    """``POST /v1/groups``: the caller becomes admin; ``members`` are account ids."""

    name: GroupName
    members: Annotated[list[UUID], msgspec.Meta(max_length=MAX_MEMBERS_PER_REQUEST)]
    avatar: Avatar | None = None


class AddMembersRequest(msgspec.Struct, frozen=True):
    """``POST /v1/groups/{group_id}/members`` (admins only)."""

    members: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=MAX_MEMBERS_PER_REQUEST)]


class PromoteRequest(msgspec.Struct, frozen=True):
    """``POST /v1/groups/{group_id}/admins`` (admins only): make a member an admin."""

    account_id: UUID


class GroupSettings(msgspec.Struct, frozen=True):
    """The caller's own flags for a group (``PUT /v1/groups/{group_id}/settings``)."""

    archived: bool = False
    muted_until: Millis = 0
    sound: SoundName | None = None


class GroupMemberInfo(msgspec.Struct, frozen=True):
    """One member: its account, normalised address, role and current device ids, and the
    registration id of each device (same order as ``devices``; empty from a server that
    predates the field)."""

    account_id: UUID
    address: str
    role: str
    joined: int
    devices: list[int]
    registration_ids: list[int] = msgspec.field(default_factory=list)

    def registration_id(self, device: int) -> int | None:
        """The registration id the server has for ``device``, or None if not told."""
        if len(self.registration_ids) != len(self.devices):
            return None
        for known, registration_id in zip(self.devices, self.registration_ids, strict=True):
            if known == device:
                return registration_id
        return None


class GroupInfo(msgspec.Struct, frozen=True):
    """A group as a member sees it; ``settings`` are the caller's own."""

    group_id: UUID
    name: str
    avatar: bytes | None
    revision: int
    created: int
    updated: int
    members: list[GroupMemberInfo]
    settings: GroupSettings


class GroupList(msgspec.Struct, frozen=True):
    """``GET /v1/groups``: the caller's groups."""

    groups: list[GroupInfo]
