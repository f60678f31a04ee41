"""Groups for the application: create, add, remove, leave, promote, list and send.

Owns: the send side of Signal-style groups over kurir (issue 6). The server's member list
(``GET /v1/groups/{id}``) is the authority. Before each message this device

1. starts a new sender key (`rotate_sender_key`) when a device that holds the current one is no
   longer a member device, or a member was removed or left since (`GroupKeys`), so that whoever
   left cannot read what follows;
2. gives its sender key, as a `SenderKeyDistribution` content inside the 1:1 sessions, to every
   member device that does not hold it yet (a new member gets only the key's current position,
   so it cannot read earlier messages);
3. encrypts the message once (`group_encrypt`) and sends it with one ``group_send``; the server
   fans it out to every other member device.

Membership changes are made over HTTP, then announced to the group as an encrypted
`GroupChange`. Per-member archive / mute / sound flags are the server's (``PUT
.../settings``). It knows nothing of receiving (`kurir.client.group_store`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar
from uuid import UUID

import msgspec

from kurir.client.content import (
    Content,
    Delete,
    Edit,
    GroupAction,
    GroupChange,
    GroupMessage,
    Reaction,
    SenderKeyDistribution,
    SenderKeyRequest,
    Text,
    encode_content,
)
from kurir.client.directory import Directory
from kurir.client.errors import (
    IdentityChangedError,
    NotRegisteredError,
    PeerContentError,
    UsageError,
)
from kurir.client.events import MessageId
from kurir.client.group_store import GroupKeys, SqliteSenderKeyStore
from kurir.client.outgoing import Outgoing
from kurir.client.store import ClientStore
from kurir.client.transport import HttpApi, MessageChannel
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import Rng
from kurir.crypto.sender_keys import (
    create_sender_key_distribution_message,
    group_encrypt,
    rotate_sender_key,
)
from kurir.wire import group_api

__all__ = ["Groups"]

_log = logging.getLogger(__name__)

GroupBody = Text | Reaction | Edit | Delete
T = TypeVar("T")


class Groups:
    """Group operations of one client (get it from `Client.groups`).

    Args:
        store: the profile's store.
        http: the HTTP API.
        directory: resolves addresses.
        outgoing: returns the send path (None while not connected).
        channel: returns the message channel (None while not connected).
        now_ms: the clock.
        rng: randomness (message ids, sender keys, signatures).
    """

    def __init__(
        self,
        store: ClientStore,
        http: HttpApi,
        directory: Directory,
        outgoing: Callable[[], Outgoing | None],
        channel: Callable[[], MessageChannel | None],
        *,
        now_ms: Callable[[], int],
        rng: Rng,
    ) -> None:
        self._store = store
        self._http = http
        self._directory = directory
        self._outgoing = outgoing
        self._channel = channel
        self._now_ms = now_ms
        self._rng = rng
        self._keys = SqliteSenderKeyStore(store)
        self._holders = GroupKeys(store)

    # --- HTTP ---------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, answer: type[T] | None, body: msgspec.Struct | None = None
    ) -> T:
        return await self._http._call(method, path, answer, body=body)

    async def _accounts(self, addresses: Sequence[str]) -> list[UUID]:
        return [(await self._directory.lookup(a)).account_id for a in addresses]

    async def list(self) -> list[group_api.GroupInfo]:
        """The groups this account is a member of."""
        return list((await self._call("GET", "/v1/groups", group_api.GroupList)).groups)

    async def get(self, group_id: UUID) -> group_api.GroupInfo:
        """One group (``ServerError`` ``not_found`` when we are not a member)."""
        info: group_api.GroupInfo = await self._call(
            "GET", f"/v1/groups/{group_id}", group_api.GroupInfo
        )
        return info

    async def create(
        self, name: str, addresses: Sequence[str], *, avatar: bytes | None = None
    ) -> group_api.GroupInfo:
        """Creates a group of us (admin) and ``addresses``, and announces it to them.

        Args:
            name: the group's name (1 to 128 characters).
            addresses: the other members, from any app.
            avatar: opaque bytes the server keeps as they are (encrypt an image first).
        """
        request = group_api.CreateGroupRequest(name, await self._accounts(addresses), avatar)
        info: group_api.GroupInfo = await self._call(
            "POST", "/v1/groups", group_api.GroupInfo, request
        )
        await self._announce(info, GroupAction.CREATED, [m.account_id for m in info.members])
        return info

    async def add(self, group_id: UUID, addresses: Sequence[str]) -> group_api.GroupInfo:
        """Adds members (we must be an admin) and announces it; they get sender keys from
        each member before that member's next message."""
        accounts = await self._accounts(addresses)
        info: group_api.GroupInfo = await self._call(
            "POST",
            f"/v1/groups/{group_id}/members",
            group_api.GroupInfo,
            group_api.AddMembersRequest(accounts),
        )
        await self._announce(info, GroupAction.ADDED, accounts)
        return info

    async def remove(self, group_id: UUID, address: str) -> group_api.GroupInfo:
        """Removes a member (we must be an admin); our next message (this announcement) uses
        a new sender key, and so does every other member's. The removed member is told in a
        1:1 message (the group's fan-out no longer reaches it)."""
        (account,) = await self._accounts([address])
        before = await self.get(group_id)
        info: group_api.GroupInfo = await self._call(
            "DELETE", f"/v1/groups/{group_id}/members/{account}", group_api.GroupInfo
        )
        with self._store.transaction():
            self._holders.request_rotation(group_id)
        change = await self._announce(info, GroupAction.REMOVED, [account])
        gone = next((m for m in before.members if m.account_id == account), None)
        outgoing = self._outgoing()
        if gone is not None and outgoing is not None:
            message_id = MessageId(self._rng(16))
            self._store.mark_control(message_id)
            now = self._now_ms()
            plaintext = encode_content(Content(change, sent_at=now))
            await outgoing.deliver(account, set(gone.devices), message_id, now, plaintext)
        return info

    async def promote(self, group_id: UUID, address: str) -> group_api.GroupInfo:
        """Makes a member an admin (we must be an admin) and announces it."""
        (account,) = await self._accounts([address])
        info: group_api.GroupInfo = await self._call(
            "POST",
            f"/v1/groups/{group_id}/admins",
            group_api.GroupInfo,
            group_api.PromoteRequest(account),
        )
        await self._announce(info, GroupAction.PROMOTED, [account])
        return info

    async def leave(self, group_id: UUID) -> None:
        """Announces that we leave, then leaves; the others rotate their sender keys."""
        info = await self.get(group_id)
        me = self._me()
        await self._announce(info, GroupAction.LEFT, [me.name])
        await self._call("POST", f"/v1/groups/{group_id}/leave", None)
        with self._store.transaction():  # should we be added again, we start a new key
            self._holders.start_new_key(group_id)
            self._holders.request_rotation(group_id)

    async def settings(
        self,
        group_id: UUID,
        *,
        archived: bool = False,
        muted_until: int = 0,
        sound: str | None = None,
    ) -> None:
        """Replaces our own archive / mute / sound flags for the group (kept by the server)."""
        body = group_api.GroupSettings(archived, muted_until, sound)
        await self._call("PUT", f"/v1/groups/{group_id}/settings", None, body)

    async def request_key(self, account_id: UUID, device: int, group_id: UUID) -> None:
        """Asks a member's devices for their sender key again (one of its group messages
        arrived before its key); they give it before their next group message."""
        outgoing = self._outgoing()
        if outgoing is None:
            raise UsageError("not connected (call connect first)")
        contact = self._directory.known(account_id)
        devices = set(contact.devices) if contact is not None else {device}
        message_id = MessageId(self._rng(16))
        self._store.mark_control(message_id)
        now = self._now_ms()
        plaintext = encode_content(Content(SenderKeyRequest(str(group_id)), sent_at=now))
        await outgoing.deliver(account_id, devices | {device}, message_id, now, plaintext)

    # --- sending ------------------------------------------------------------------------------

    async def send_text(self, group_id: UUID, text: str) -> MessageId:
        """Sends a text to the group; see `send`."""
        if not text.strip():
            raise UsageError("a message must not be empty")
        return await self.send(group_id, Text(text))

    async def send(self, group_id: UUID, body: GroupBody) -> MessageId:
        """Encrypts ``body`` once with our sender key and sends it to every member device.

        Returns:
            The message's id.

        Raises:
            UsageError: not connected.
            ServerError: ``not_a_member`` and other refusals.
        """
        info = await self.get(group_id)
        return await self._send_content(info, GroupMessage(str(group_id), body))

    async def _announce(
        self, info: group_api.GroupInfo, action: GroupAction, targets: Sequence[UUID | str]
    ) -> GroupChange:
        change = GroupChange(
            str(info.group_id), action, info.name, [str(t) for t in targets], info.revision
        )
        await self._send_content(info, change)
        return change

    def _me(self) -> ProtocolAddress:
        account = self._store.account()
        if account is None:
            raise NotRegisteredError()
        return ProtocolAddress(str(account.account_id), DeviceId(account.device_id))

    async def _send_content(
        self, info: group_api.GroupInfo, body: GroupMessage | GroupChange
    ) -> MessageId:
        outgoing, channel = self._outgoing(), self._channel()
        if outgoing is None or channel is None:
            raise UsageError("not connected (call connect first)")
        me = self._me()
        group_id = info.group_id
        members = {
            (m.account_id, d)
            for m in info.members
            for d in m.devices
            if (str(m.account_id), d) != (me.name, me.device_id)
        }
        holders = self._holders.holders(group_id)
        now = self._now_ms()
        with self._store.transaction():
            if holders - members or self._holders.rotation_requested(group_id):
                # someone who holds our key left: it must not read what follows
                rotate_sender_key(me, group_id, self._keys, self._rng)
                self._holders.start_new_key(group_id)
                holders = set()
            distribution = create_sender_key_distribution_message(
                me, group_id, self._keys, self._rng
            )
        missing: dict[UUID, set[int]] = {}
        for account_id, device in members - holders:
            missing.setdefault(account_id, set()).add(device)
        if missing:
            key = encode_content(
                Content(SenderKeyDistribution(str(group_id), distribution.serialized), sent_at=now)
            )
            for account_id, devices in sorted(missing.items()):
                message_id = MessageId(self._rng(16))
                self._store.mark_control(message_id)  # its receipts are not the app's
                try:
                    accepted = await outgoing.deliver(account_id, devices, message_id, now, key)
                except (IdentityChangedError, PeerContentError) as exc:
                    # not given our key until the user accepts the new identity (trust); the
                    # others must still get the message
                    _log.warning("a member gets no sender key: %s", type(exc).__name__)
                    continue
                self._holders.add_holders(group_id, {(account_id, d) for d in accepted})
        message_id = MessageId(self._rng(16))
        with self._store.transaction():
            sealed = group_encrypt(
                self._keys, me, group_id, encode_content(Content(body, sent_at=now)), self._rng
            )
        await channel.send_group(group_id, message_id, now, sealed.serialized)
        return message_id
