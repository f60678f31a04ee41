"""Sending: one message, encrypted once per recipient device, delivered with device-set repair.

Owns: the send path of the client (Signal's "encrypt once per device, let the server check the
device set"): starting sessions from prekey bundles where none exists, encrypting a padded
`Content` for every device of the recipient, committing the ratchet state *before* the
ciphertext leaves, and repairing the device list when the server answers
``mismatched_devices`` (fetch bundles for missing devices, drop sessions of extra ones) or
``stale_devices`` (drop the sessions and start new ones), then retrying with the same message
id (the server's enqueue is idempotent on it). It knows nothing of receiving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final
from uuid import UUID

from kurir.client import cipher
from kurir.client.errors import IdentityChangedError, PeerContentError, ServerError
from kurir.client.events import MessageId
from kurir.client.keystore import SqliteProtocolStore
from kurir.client.store import ClientStore
from kurir.client.transport import HttpApi, MessageChannel, SendFailedError
from kurir.crypto.curve import Rng
from kurir.crypto.errors import SignalProtocolError, UntrustedIdentityError
from kurir.wire.errors import ErrorCode
from kurir.wire.frames import DeviceMessage, EnvelopeType

__all__ = ["MAX_ATTEMPTS", "Outgoing"]

_log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 4
"""How many times a send is retried after the server reported a changed device set."""


class Outgoing:
    """The send path of one client.

    Args:
        store: the local store (sessions are committed here before sending).
        protocol_store: the Signal store Protocols over ``store``.
        http: the HTTP API (prekey bundles).
        channel: returns the open message channel.
        now_ms: the clock.
        rng: randomness for the ratchet.
    """

    def __init__(
        self,
        store: ClientStore,
        protocol_store: SqliteProtocolStore,
        http: HttpApi,
        channel: Callable[[], MessageChannel],
        *,
        now_ms: Callable[[], int],
        rng: Rng,
    ) -> None:
        self._store = store
        self._protocol = protocol_store
        self._http = http
        self._channel = channel
        self._now_ms = now_ms
        self._rng = rng
        self._locks: dict[UUID, asyncio.Lock] = {}

    async def deliver(
        self,
        account: UUID,
        devices: set[int],
        message_id: MessageId,
        timestamp: int,
        plaintext: bytes,
    ) -> set[int]:
        """Encrypts ``plaintext`` for every device of ``account`` and sends it.

        Args:
            account: the recipient account.
            devices: the devices believed to exist (the server corrects the list).
            message_id: the message's id (the same on every retry).
            timestamp: the sender's timestamp (ms).
            plaintext: the padded, encoded content.

        Returns:
            The device set the server accepted (the caller caches it).

        Raises:
            IdentityChangedError: the recipient's identity key changed and is not accepted.
            PeerContentError: the recipient's published keys are unusable.
            ServerError: the server refused for another reason, or the device set kept
                changing for `MAX_ATTEMPTS` attempts.
            TransportError: the connection is closed for good.
        """

        async def build(current: set[int]) -> list[DeviceMessage]:
            return await self._encrypt_for(account, current, plaintext)

        return await self._deliver(account, devices, message_id, timestamp, build)

    async def deliver_unencrypted(
        self, account: UUID, devices: set[int], message_id: MessageId, timestamp: int, body: bytes
    ) -> set[int]:
        """Sends the same unencrypted body (type 8, PLAINTEXT_CONTENT) to every device of
        ``account``. Only for bodies that carry nothing secret (retry requests).

        Raises:
            ServerError, TransportError: as `deliver`.
        """

        async def build(current: set[int]) -> list[DeviceMessage]:
            messages = []
            for device in sorted(current):
                registration_id = await self._registration_id(account, device)
                if registration_id is not None:
                    messages.append(
                        DeviceMessage(
                            device=device,
                            registration_id=registration_id,
                            type=EnvelopeType.PLAINTEXT_CONTENT,
                            body=body,
                        )
                    )
            return messages

        return await self._deliver(account, devices, message_id, timestamp, build)

    async def _deliver(
        self,
        account: UUID,
        devices: set[int],
        message_id: MessageId,
        timestamp: int,
        build: Callable[[set[int]], Awaitable[list[DeviceMessage]]],
    ) -> set[int]:
        # One send per recipient at a time: two sends must not race to start sessions.
        async with self._locks.setdefault(account, asyncio.Lock()):
            current = set(devices)
            for _ in range(MAX_ATTEMPTS):
                messages = await build(current)
                try:
                    await self._channel().send(account, message_id, timestamp, messages)
                except SendFailedError as exc:
                    if exc.code == ErrorCode.MISMATCHED_DEVICES:
                        for device in exc.extra:
                            self._store.delete_session(str(account), device)
                        current = (current - set(exc.extra)) | set(exc.missing)
                        _log.info(
                            "device set changed: %d missing, %d extra",
                            len(exc.missing),
                            len(exc.extra),
                        )
                        continue
                    if exc.code == ErrorCode.STALE_DEVICES:
                        for device in exc.stale:
                            self._store.delete_session(str(account), device)
                        _log.info("%d stale device sessions dropped", len(exc.stale))
                        continue
                    raise
                return {m.device for m in messages}  # the set the server accepted
            raise ServerError("device_set_unstable", "the recipient's devices kept changing")

    async def _registration_id(self, account: UUID, device: int) -> int | None:
        known = cipher.remote_registration_id(self._protocol, str(account), device)
        if known is not None:
            return known
        try:
            bundle = await self._http.prekey_bundle(account, device)
        except ServerError as exc:
            if exc.code in (ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_ACCOUNT):
                return None
            raise
        return next((d.registration_id for d in bundle.devices if d.device_id == device), None)

    async def _encrypt_for(
        self, account: UUID, devices: set[int], plaintext: bytes
    ) -> list[DeviceMessage]:
        name = str(account)
        ready = []
        for device in sorted(devices):
            if not cipher.has_session(self._protocol, name, device, now_ms=self._now_ms()):
                await self._start_session(account, device)
            if cipher.has_session(self._protocol, name, device, now_ms=self._now_ms()):
                ready.append(device)  # else the device is gone; the server's check tells
        messages = []
        # The ratchet state must be durable before any ciphertext made from it leaves.
        with self._store.transaction():
            for device in ready:
                try:
                    sealed = cipher.encrypt(
                        self._protocol, name, device, plaintext, now_ms=self._now_ms()
                    )
                except UntrustedIdentityError:
                    raise IdentityChangedError(self._name_of(account)) from None
                messages.append(
                    DeviceMessage(
                        device=device,
                        registration_id=sealed.registration_id,
                        type=sealed.envelope_type,
                        body=sealed.body,
                    )
                )
        return messages

    def _name_of(self, account: UUID) -> str:
        contact = self._store.contact_by_account(account)
        return str(account) if contact is None else contact.address

    async def _start_session(self, account: UUID, device: int) -> None:
        try:
            bundle = await self._http.prekey_bundle(account, device)
        except ServerError as exc:
            if exc.code in (ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_ACCOUNT):
                return  # the device is gone
            raise
        for device_bundle in bundle.devices:
            try:
                with self._store.transaction():
                    cipher.start_session(
                        self._protocol,
                        str(account),
                        bundle.identity_key,
                        device_bundle,
                        now_ms=self._now_ms(),
                        rng=self._rng,
                    )
            except UntrustedIdentityError:
                raise IdentityChangedError(self._name_of(account)) from None
            except SignalProtocolError as exc:
                raise PeerContentError(
                    f"the recipient's published keys are unusable ({type(exc).__name__})"
                ) from None
