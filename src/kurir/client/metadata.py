"""The SDK side of the metadata features: blocks, message requests, archive, mute, sound,
reachability, contacts, profiles and the transparency report.

This module owns calling the server's metadata routes (docs/protocol.md §11) for one
registered device. Everything here is metadata the server openly keeps; nothing here touches
keys or message content. Peers are named by address; the server resolves them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kurir.client.errors import UnknownAddressError
from kurir.client.transport import HttpApi
from kurir.wire import metadata_api as m
from kurir.wire.address import IdentifierKind, parse_address
from kurir.wire.errors import AddressError

__all__ = ["Metadata"]


class Metadata:
    """Metadata operations of one registered device (``Client.metadata``).

    Args:
        http: The device's authenticated HTTP API.
    """

    def __init__(self, http: HttpApi) -> None:
        self._http = http
        self._kinds: dict[str, IdentifierKind] | None = None

    async def _call(self, method: str, path: str, answer: Any, body: Any = None) -> Any:
        return await self._http._call(method, path, answer, body=body)

    async def _normalise(self, address: str) -> str:
        if self._kinds is None:
            apps = await self._http.apps()
            self._kinds = {a.id: IdentifierKind(a.identifier_kind) for a in apps.apps}
        try:
            return str(parse_address(address, self._kinds))
        except AddressError:
            return address  # the server gives the precise error

    # -- reachability and blocks -------------------------------------------------------

    async def settings(self) -> m.SettingsBody:
        """The account's settings (reachability, default sound and mute, unarchive)."""
        result: m.SettingsBody = await self._call("GET", "/v1/settings", m.SettingsBody)
        return result

    async def update_settings(
        self,
        *,
        reachability: str | None = None,
        default_sound: str | None = None,
        default_muted: bool | None = None,
        unarchive_on_message: bool | None = None,
    ) -> m.SettingsBody:
        """Change settings; ``None`` leaves one as it is. Unknown values: ServerError."""
        body = m.SettingsUpdate(reachability, default_sound, default_muted, unarchive_on_message)
        result: m.SettingsBody = await self._call("PUT", "/v1/settings", m.SettingsBody, body)
        return result

    async def block(self, address: str) -> None:
        """Block the account at ``address`` (whichever app it uses)."""
        await self._call("POST", "/v1/blocks", None, m.PeerRef(address=address))

    async def unblock(self, address: str) -> None:
        """Lift a block."""
        await self._call("POST", "/v1/blocks/remove", None, m.PeerRef(address=address))

    async def blocks(self) -> list[m.BlockEntry]:
        """The accounts this account blocked."""
        result: m.BlockList = await self._call("GET", "/v1/blocks", m.BlockList)
        return result.blocks

    async def requests(self) -> list[m.RequestEntry]:
        """Pending message requests (first messages from strangers)."""
        result: m.RequestList = await self._call("GET", "/v1/requests", m.RequestList)
        return result.requests

    async def accept(self, address: str) -> None:
        """Accept the message request from ``address``."""
        await self._call("POST", "/v1/requests/accept", None, m.PeerRef(address=address))

    async def decline(self, address: str) -> None:
        """Decline the message request from ``address``: later messages are dropped."""
        await self._call("POST", "/v1/requests/decline", None, m.PeerRef(address=address))

    # -- conversations -----------------------------------------------------------------

    async def conversations(self) -> list[m.ConversationInfo]:
        """Every conversation with its state, flags and counts."""
        result: m.ConversationList = await self._call(
            "GET", "/v1/conversations", m.ConversationList
        )
        return result.conversations

    async def _peer(self, address: str) -> UUID:
        wanted = await self._normalise(address)
        for c in await self.conversations():
            if c.address == wanted:
                return c.account_id
        raise UnknownAddressError(wanted)

    async def set_flags(
        self,
        address: str,
        *,
        archived: bool | None = None,
        muted: str | None = None,
        sound: str | None = None,
    ) -> m.ConversationInfo:
        """Archive/unarchive, mute (``on``/``off``/``inherit``) or set the sound of the
        conversation with ``address`` (synced to this account's other devices)."""
        peer = await self._peer(address)
        body = m.ConversationFlags(archived, muted, sound)
        result: m.ConversationInfo = await self._call(
            "PUT", f"/v1/conversations/{peer}", m.ConversationInfo, body
        )
        return result

    # -- contacts and profiles ---------------------------------------------------------

    async def upload_contacts(
        self, entries: list[str], *, region: str | None = None
    ) -> m.ContactUploadResult:
        """Upload the address book; returns what was stored and who is reachable."""
        body = m.ContactUpload(entries, region)
        result: m.ContactUploadResult = await self._call(
            "POST", "/v1/contacts", m.ContactUploadResult, body
        )
        return result

    async def contacts(self) -> list[str]:
        """The stored address book."""
        result: m.ContactList = await self._call("GET", "/v1/contacts", m.ContactList)
        return result.entries

    async def profile(self, account_id: UUID) -> m.ProfileInfo:
        """A profile (own, or another's if its reachability allows)."""
        result: m.ProfileInfo = await self._call("GET", f"/v1/profile/{account_id}", m.ProfileInfo)
        return result

    async def set_display_name(self, name: str | None) -> None:
        """Set or remove the display name."""
        await self._call("PUT", "/v1/profile", None, m.ProfileUpdate(name))

    async def set_avatar(self, image: bytes | None) -> None:
        """Set (PNG/JPEG/WebP/GIF, <= 512 KiB) or remove the profile picture."""
        if image is None:
            await self._call("DELETE", "/v1/profile/avatar", None)
        else:
            await self._call("PUT", "/v1/profile/avatar", None, m.AvatarUpload(image))

    async def report(self) -> m.Report:
        """The transparency report: everything the server stores about this account."""
        result: m.Report = await self._call("GET", "/v1/report", m.Report)
        return result
