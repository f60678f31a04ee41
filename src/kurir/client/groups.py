"""Groups for the application: create, add, remove, leave, promote, list and send.

Owns: the send side of Signal-style groups over kurir (issue 6). The server's member list
(``GET /v1/groups/{id}``) is the authority. Before each message this device

1. starts a new sender key (`rotate_sender_key`) when a device that holds the current one is no
   longer a member device (removed, or re-registered or re-linked under the same device id: the
   server lists a new registration id), or a member was removed or left since (`GroupKeys`), so
   that whoever left cannot read what follows;
2. gives its sender key, as a `SenderKeyDistribution` content inside the 1:1 sessions, to every
   member device that does not hold it yet under its current registration id (a new member
   gets only the key's current position, so it cannot read earlier messages);
3. encrypts the message once (`group_encrypt`), keeps its plaintext among the recent sends
   (for retries) and sends it with one ``group_send``; the server fans it out to every other
   member device.

A device added between our member-list read and our ``group_send`` gets a message it cannot
decrypt; it sends a retry request, and `resend` answers it as Signal does: after checking the
server's current member list (a removed member is never sent anything), our sender key over
the 1:1 session, then the message's content 1:1 (``resend_of`` = its id). 1:1, not a new
``group_send``: only the requester needs it, every other member would get (and drop) another
copy, and a resend in the group would need a new sender-key message the requester can only
read once it has the key anyway.

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

from kurir.client import cipher
from kurir.client.content import (
    Content,
    Delete,
    Edit,
    GroupAction,
    GroupChange,
    GroupMessage,
    Reaction,
    SenderKeyDistribution,
    Text,
    decode_content,
    encode_content,
)
from kurir.client.directory import Directory
from kurir.client.errors import (
    IdentityChangedError,
    NotRegisteredError,
    PeerContentError,
    ServerError,
    UsageError,
)
from kurir.client.events import MessageId
from kurir.client.group_store import (
    UNKNOWN_REGISTRATION,
    GroupKeys,
    Holder,
    SqliteSenderKeyStore,
)
from kurir.client.keystore import SqliteProtocolStore
from kurir.client.outgoing import Outgoing
from kurir.client.store import ClientStore, SentItem
from kurir.client.transport import HttpApi, MessageChannel
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import Rng
from kurir.crypto.sender_keys import (
    create_sender_key_distribution_message,
    group_encrypt,
    rotate_sender_key,
)
from kurir.wire import group_api
from kurir.wire.errors import ErrorCode
from kurir.wire.message_id import new_message_id

__all__ = ["Groups", "by_device", "devices_without_key", "holders_gone"]

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
        now_ms: the clock; it also makes message timestamps, which a retry request names,
            so it must not give one twice (the `Client` passes its unique timestamps).
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
            now = self._now_ms()
            message_id = MessageId(new_message_id(now, self._rng))
            self._store.mark_control(message_id)
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
        protocol = SqliteProtocolStore(self._store)
        current: Devices = {
            (m.account_id, d): self._registration(protocol, m, d)
            for m in info.members
            for d in m.devices
            if (str(m.account_id), d) != (me.name, me.device_id)
        }
        holders = by_device(self._holders.holders(group_id))
        now = self._now_ms()
        with self._store.transaction():
            if holders_gone(holders, current) or self._holders.rotation_requested(group_id):
                # someone who holds our key left: it must not read what follows
                rotate_sender_key(me, group_id, self._keys, self._rng)
                self._holders.start_new_key(group_id)
                holders = {}
            # makes our sender key if we have none yet (also when no one else is a member)
            create_sender_key_distribution_message(me, group_id, self._keys, self._rng)
        missing = devices_without_key(holders, current)
        await self._give_key(outgoing, protocol, group_id, missing, now)
        message_id = MessageId(new_message_id(now, self._rng))
        plaintext = encode_content(Content(body, sent_at=now))
        with self._store.transaction():
            sealed = group_encrypt(self._keys, me, group_id, plaintext, self._rng)
        # kept before it leaves: a member's retry request may come back before our result
        self._store.put_sent(message_id, group_id, plaintext, timestamp=now)
        await channel.send_group(group_id, message_id, now, sealed.serialized)
        return message_id

    async def _give_key(
        self,
        outgoing: Outgoing,
        protocol: SqliteProtocolStore,
        group_id: UUID,
        devices: dict[UUID, set[int]],
        now: int,
    ) -> None:
        """Gives our current sender key to ``devices`` over the 1:1 sessions and records them
        as holders under the registration ids the server just accepted for them."""
        if not devices:
            return
        me = self._me()
        with self._store.transaction():
            distribution = create_sender_key_distribution_message(
                me, group_id, self._keys, self._rng
            )
        key = encode_content(
            Content(SenderKeyDistribution(str(group_id), distribution.serialized), sent_at=now)
        )
        for account_id, wanted in sorted(devices.items()):
            message_id = MessageId(new_message_id(now, self._rng))
            self._store.mark_control(message_id)  # its receipts are not the app's
            try:
                accepted = await outgoing.deliver(account_id, wanted, message_id, now, key)
            except (IdentityChangedError, PeerContentError) as exc:
                # not given our key until the user accepts the new identity (trust); the
                # others must still get the message
                _log.warning("a member gets no sender key: %s", type(exc).__name__)
                continue
            # the server checked each device's registration id against our session's
            given: set[Holder] = {
                (account_id, d, _session_registration(protocol, account_id, d)) for d in accepted
            }
            self._holders.add_holders(group_id, given)

    @staticmethod
    def _registration(
        protocol: SqliteProtocolStore, member: group_api.GroupMemberInfo, device: int
    ) -> int:
        # The server's list is the authority; from a server that does not tell, the session's
        # (as Signal-iOS does); unknown makes the device get our key again.
        told = member.registration_id(device)
        if told is not None:
            return told
        return _session_registration(protocol, member.account_id, device)

    # --- answering retries (kurir.client.retry) ----------------------------------------------

    async def resend(self, requester: UUID, device: int, timestamp: int) -> bool:
        """Answers a retry request for one of our group messages (Signal's sender key retry).

        The requesting device could not decrypt the group message we sent at ``timestamp``
        (typically it was added while we were sending, so it never got our key). If the
        server's current member list still has that device, it gets our sender key (at its
        current position) over the 1:1 session, then the message's content again, 1:1, with
        ``resend_of`` set to its id, so its application sees it once, under that id. A device
        that is no longer a member device, or a group we are no longer in, gets nothing.

        Returns:
            False when ``timestamp`` names no group message we sent recently.

        Raises:
            UsageError: not connected.
            ServerError, TransportError: the member list or a send failed.
        """
        found = self._sent_group_message(timestamp)
        if found is None:
            return False
        group_id, sent = found
        outgoing = self._outgoing()
        if outgoing is None:
            raise UsageError("not connected (call connect first)")
        try:
            info = await self.get(group_id)  # now, not from when we sent it
        except ServerError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
            _log.info("a retry request for a group we are no longer in: not answered")
            return True
        member = next((m for m in info.members if m.account_id == requester), None)
        if member is None or device not in member.devices:
            _log.info("a retry request from a device that is no longer a member: not answered")
            return True
        try:
            original = decode_content(sent.content)
        except PeerContentError:
            return True
        protocol = SqliteProtocolStore(self._store)
        now = self._now_ms()
        devices = set(member.devices)
        await self._give_key(outgoing, protocol, group_id, {requester: devices}, now)
        message_id = MessageId(new_message_id(now, self._rng))
        self._store.mark_control(message_id)
        resent = msgspec.structs.replace(original, resend_of=sent.message_id)
        await outgoing.deliver(requester, devices, message_id, now, encode_content(resent))
        return True

    def _sent_group_message(self, timestamp: int) -> tuple[UUID, SentItem] | None:
        # A group send is kept with the group id as its recipient; the groups we sent to are
        # those we hold our own sender key for.
        for group_id in self._keys.distribution_ids(self._me()):
            sent = self._store.sent_to(group_id, timestamp)
            if sent is not None:
                return group_id, sent
        return None


def _session_registration(protocol: SqliteProtocolStore, account_id: UUID, device: int) -> int:
    known = cipher.remote_registration_id(protocol, str(account_id), device)
    return UNKNOWN_REGISTRATION if known is None else known


Devices = dict[tuple[UUID, int], int]
"""Registration id by (account, device); `UNKNOWN_REGISTRATION` where it is not known."""


def by_device(holders: set[Holder]) -> Devices:
    """The holders of a group as (account, device) -> registration id."""
    return {(a, d): r for a, d, r in holders}


def holders_gone(holders: Devices, current: Devices) -> bool:
    """Whether a device that holds our current key is no longer a member device: its device id
    is gone, or it is listed under another registration id than the one it got the key under
    (re-registered or re-linked: whoever had the old installation must not read on). An
    unknown registration id on either side proves nothing."""
    for device, registration_id in holders.items():
        now = current.get(device)
        if now is None:
            return True
        if UNKNOWN_REGISTRATION not in (registration_id, now) and now != registration_id:
            return True
    return False


def devices_without_key(holders: Devices, current: Devices) -> dict[UUID, set[int]]:
    """The member devices to give our key to, by account: those that do not hold it under
    their current registration id (an unknown one counts as not holding it)."""
    missing: dict[UUID, set[int]] = {}
    for (account_id, device), registration_id in current.items():
        if registration_id == UNKNOWN_REGISTRATION or holders.get((account_id, device)) != (
            registration_id
        ):
            missing.setdefault(account_id, set()).add(device)
    return missing
