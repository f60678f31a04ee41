"""The async `Client` every app embeds: a small orchestrator over the client's parts.

Owns: the lifecycle of one profile (open, register, connect, close) and the public API
(`register`, `lookup`, `send_text` / `send`, `events`, `safety_number`, `refill_prekeys`). The
work is done elsewhere: `store` keeps state, `keys` makes prekeys, `directory` resolves
addresses, `outgoing` encrypts and sends, `incoming` decrypts and stores, `transport` moves
bytes, `content` shapes plaintexts, `events` shapes what the application sees.

Typical use::

    async with await Client.open(profile, "http://127.0.0.1:8080", app_key=key) as client:
        await client.register("instagram:@rina", "123456")   # once per profile
        await client.connect()
        message_id = await client.send_text("whatsapp:+6281234567890", "halo")
        async for event in client.events():
            ...

Exactly-once to the application: `events` yields each stored item once per process and
deletes it when the application asks for the next one (or calls `handled`). An item that was
yielded but not handled when the process stopped is yielded again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from uuid import UUID

from kurir.client import cipher, keys
from kurir.client.atrest import KeyFile, KeyProvider
from kurir.client.content import (
    Body,
    Content,
    Delete,
    Edit,
    MessageRef,
    Reaction,
    SentTranscript,
    Text,
    encode_content,
)
from kurir.client.directory import Directory
from kurir.client.errors import (
    AlreadyRegisteredError,
    ClientError,
    IdentityChangedError,
    NotRegisteredError,
    PeerContentError,
    ServerError,
    TransportError,
    UsageError,
)
from kurir.client.events import Event, MessageId, event_from_inbox
from kurir.client.group_store import GroupReceiver
from kurir.client.groups import Groups
from kurir.client.incoming import EnvelopeTap, Incoming
from kurir.client.keystore import SqliteProtocolStore
from kurir.client.metadata import Metadata
from kurir.client.outgoing import Outgoing
from kurir.client.retry import Retries, RetryRequest
from kurir.client.store import DB_FILE, Account, ClientStore, Contact
from kurir.client.transport import DeviceAuth, HttpApi, MessageChannel
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import PrivateKey, PublicKey, Rng
from kurir.crypto.errors import SignalProtocolError, UntrustedIdentityError
from kurir.crypto.fingerprint import Fingerprint
from kurir.crypto.prekeys import IdentityKeyPair, generate_registration_id
from kurir.wire import api
from kurir.wire.auth import encode_password
from kurir.wire.errors import ErrorCode
from kurir.wire.frames import Drained, Envelope
from kurir.wire.limits import MESSAGE_ID_BYTES
from kurir.wire.message_id import new_message_id

__all__ = ["DEV_CODE", "Client"]

_log = logging.getLogger(__name__)

DEV_CODE: Final = "123456"
"""The verification code the server's development verifier accepts."""
PASSWORD_BYTES: Final = 32
CLOSE_GRACE_S: Final = 5.0
"""How long :meth:`Client.close` lets background retry work finish before cancelling it."""
_KEYS_PUBLISHED: Final = "keys_published"


def system_ms() -> int:
    """The system clock in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class Client:
    """One device of one account. Create it with `Client.open`.

    Args:
        store: the profile's store.
        server_url: the server's base URL.
        now_ms: the clock.
        rng: randomness (keys, passwords, message ids, ratchet).
        tap: sees every envelope as the server delivered it (diagnostics; the demo shows what
            the server stored with it). It never sees plaintext.
        app_key: the client key of the app this SDK is built into (used to register).
    """

    def __init__(
        self,
        store: ClientStore,
        server_url: str,
        *,
        now_ms: Callable[[], int],
        rng: Rng,
        tap: EnvelopeTap | None = None,
        app_key: str | None = None,
    ) -> None:
        self._tap = tap
        self._app_key = app_key
        self._store = store
        self._server_url = server_url
        self._now_ms = now_ms
        self._rng = rng
        account = store.account()
        auth = None if account is None else _auth(account)
        self._http = HttpApi(server_url, auth)
        self._directory = Directory(store, self._http)
        self._channel: MessageChannel | None = None
        self._incoming: Incoming | None = None
        self._outgoing: Outgoing | None = None
        self._own_devices: set[int] = set()
        self._cursor = 0
        self._refill: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._retries: Retries | None = None
        self._last_timestamp = 0

    @classmethod
    async def open(
        cls,
        profile: Path | str,
        server_url: str | None = None,
        *,
        now_ms: Callable[[], int] = system_ms,
        rng: Rng = os.urandom,
        create: bool = True,
        tap: EnvelopeTap | None = None,
        app_key: str | None = None,
        key: KeyProvider | None = None,
    ) -> Self:
        """Opens the profile directory (creating it if needed and ``create``).

        Args:
            profile: the profile directory (one account per profile).
            server_url: the server; may be omitted once the profile is registered.
            create: False to refuse a profile directory that does not exist yet.
            key: holds the key that encrypts the profile's store at rest: an application
                passes its platform keystore's provider, or a `kurir.client.Passphrase`. The
                default, for development, is a `kurir.client.KeyFile` beside the profile
                directory (``PROFILE.key``), a stand-in for an OS keystore.
            tap: see `Client`.
            app_key: the client key of the app embedding this SDK (see `register`).
            now_ms: the clock (tests pass a fake one).
            rng: randomness (tests pass a seeded one).

        Raises:
            UsageError: no server URL given for a new profile, or a different one than the
                profile was registered on.
            WrongKeyError: ``key`` does not open this profile (nothing was changed).
            StoreError: the profile's store cannot be used.
        """
        path = Path(profile)
        if not create and not (path / DB_FILE).exists():
            raise NotRegisteredError()
        if key is None:
            key = KeyFile.beside(path, rng=rng)
        store = ClientStore.open(path, now_ms, key, rng=rng)
        account = store.account()
        if account is not None:
            if server_url is not None and server_url.rstrip("/") != account.server_url:
                store.close()
                raise UsageError(
                    f"this profile is registered on {account.server_url}, not {server_url}"
                )
            server_url = account.server_url
        if server_url is None:
            store.close()
            raise UsageError("no server URL given (use --server URL)")
        return cls(store, server_url.rstrip("/"), now_ms=now_ms, rng=rng, tap=tap, app_key=app_key)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Lets background retry work finish (up to :data:`CLOSE_GRACE_S`), then disconnects
        and closes the store: a one-shot command still answers a retry it received."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE_S):
                await self.settle()
        await self.disconnect()
        await self._http.aclose()
        self._store.close()

    # --- account -----------------------------------------------------------------------------

    @property
    def account(self) -> Account | None:
        """The registered account of this profile, or None."""
        return self._store.account()

    def _require_account(self) -> Account:
        account = self._store.account()
        if account is None:
            raise NotRegisteredError()
        return account

    async def register(
        self,
        address: str,
        code: str = DEV_CODE,
        *,
        app_key: str | None = None,
        device_name: str | None = None,
    ) -> Account:
        """Registers this profile as ``address`` and publishes its keys.

        Args:
            address: our address, e.g. ``instagram:@rina``.
            code: the verification code (the development verifier accepts `DEV_CODE`).
            app_key: the client key of the address's app (a key of another app is refused);
                defaults to the key the client was opened with.
            device_name: an optional name for this device.

        Returns:
            The new account.

        Raises:
            AlreadyRegisteredError: this profile already holds an account.
            InvalidAddressError: the address is malformed.
            ServerError: the server refused (``invalid_code``, ``wrong_app``, ...).
            TransportError: the server cannot be reached.
        """
        existing = self._store.account()
        if existing is not None:
            raise AlreadyRegisteredError(existing.address)
        app_key = app_key or self._app_key
        if not app_key:
            raise UsageError("no client key for this app (pass app_key)")
        normalised = await self._directory.normalise(address)
        password = encode_password(self._rng(PASSWORD_BYTES))
        registration_id = generate_registration_id(self._rng)
        identity = IdentityKeyPair.generate(self._rng)
        await self._http.request_verification(normalised, app_key)
        answer = await self._http.register(
            api.RegistrationRequest(
                address=normalised,
                code=code,
                password=password,
                registration_id=registration_id,
                device_name=device_name,
            ),
            app_key,
        )
        account = Account(
            server_url=self._server_url,
            address=normalised,
            account_id=answer.account_id,
            device_id=answer.device_id,
            password=password,
            registration_id=registration_id,
            identity_private=identity.private_key.serialize(),
            identity_public=identity.public_key.serialize(),
        )
        self._store.save_account(account)
        self._http.auth = _auth(account)
        await self._publish_keys()
        _log.info("registered a new device")
        return account

    async def _publish_keys(self) -> None:
        account = self._require_account()
        identity = _identity(account)
        with self._store.transaction():
            upload = keys.initial_upload(
                self._store, identity, now_ms=self._now_ms(), rng=self._rng
            )
        await self._http.put_keys(upload)
        self._store.set_flag(_KEYS_PUBLISHED)

    async def refill_prekeys(self) -> bool:
        """Uploads new one-time prekeys of each kind the server runs low on.

        Returns:
            True when something was uploaded.
        """
        account = self._require_account()
        counts = await self._http.key_counts()
        with self._store.transaction():
            upload = keys.refill_upload(
                self._store, _identity(account), counts, now_ms=self._now_ms(), rng=self._rng
            )
        if upload is None:
            return False
        await self._http.put_keys(upload)
        return True

    # --- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Opens the message channel; stored envelopes start arriving.

        Also publishes keys left unpublished by an interrupted registration, refills prekeys
        and learns this account's own devices.
        """
        if self._channel is not None:
            return
        account = self._require_account()
        if not self._store.flag(_KEYS_PUBLISHED):
            await self._publish_keys()
        await self.refill_prekeys()
        devices = await self._http.devices()
        self._own_devices = {d.device_id for d in devices.devices}
        protocol = SqliteProtocolStore(self._store)
        channel = MessageChannel(self._server_url, _auth(account), self._handle)
        self._incoming = Incoming(
            self._store,
            protocol,
            channel.ack,
            rng=self._rng,
            tap=self._tap,
            on_undecryptable=self._ask_for_resend,
            on_retry_request=self._answer_retry_request,
            groups=GroupReceiver(self._store, on_undecryptable=self._ask_for_resend),
        )
        self._outgoing = Outgoing(
            self._store,
            protocol,
            self._http,
            lambda: channel,
            now_ms=self._now_ms,
            rng=self._rng,
        )
        self._retries = Retries(
            self._store,
            protocol,
            self._directory,
            self._outgoing,
            device_id=account.device_id,
            now_ms=self._now_ms,
            rng=self._rng,
            groups=self.groups,
        )
        try:
            await channel.start()
        except BaseException:
            self._incoming = self._outgoing = self._retries = None
            raise
        self._channel = channel

    async def _handle(self, frame: Envelope | Drained) -> None:
        incoming = self._incoming
        if incoming is None:
            return
        await incoming.handle(frame)
        if incoming.drained.is_set() and incoming.prekey_messages and self._refill is None:
            incoming.prekey_messages = 0
            self._refill = asyncio.create_task(self._refill_quietly())

    async def _refill_quietly(self) -> None:
        try:
            await self.refill_prekeys()
        except Exception as exc:  # a failed refill is retried at the next connect
            _log.warning("prekey refill failed: %s", type(exc).__name__)
        finally:
            self._refill = None

    async def disconnect(self) -> None:
        """Closes the message channel (sending and receiving stop)."""
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._background, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        if self._refill is not None:
            await self._refill

    # --- decryption-failure retries (kurir.client.retry) -------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except ClientError as exc:
                _log.warning("%s failed: %s", what, type(exc).__name__)
            except Exception:
                _log.exception("%s failed", what)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _ask_for_resend(self, sender: UUID, device: int, request: RetryRequest) -> None:
        retries = self._retries
        if retries is not None:
            self._spawn(retries.ask_for_resend(sender, device, request), "retry request")

    def _answer_retry_request(self, requester: UUID, device: int, request: RetryRequest) -> None:
        retries = self._retries
        if retries is not None and retries.should_answer(requester, device, request):
            self._spawn(retries.resend(requester, device, request), "resend")

    async def settle(self) -> None:
        """Waits until the work received envelopes started in the background (asking a sender
        to resend, answering a retry request) has finished; failures are logged, not raised."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def wait_drained(self) -> None:
        """Waits until everything queued for this device at connect time has been stored."""
        await self._require_incoming().drained.wait()

    def _require_incoming(self) -> Incoming:
        if self._incoming is None:
            raise UsageError("not connected (call connect first)")
        return self._incoming

    @property
    def channel(self) -> MessageChannel | None:
        """The open message channel, if connected (tests use it to drop the connection)."""
        return self._channel

    @property
    def metadata(self) -> Metadata:
        """Blocks, requests, archive, mute, sound, contacts, profile, report (issue 5)."""
        self._require_account()
        return Metadata(self._http)

    @property
    def groups(self) -> Groups:
        """Group operations (`kurir.client.groups`): create, add, remove, leave, send, ..."""
        self._require_account()
        return Groups(
            self._store,
            self._http,
            self._directory,
            lambda: self._outgoing,
            lambda: self._channel,
            now_ms=self._timestamp,
            rng=self._rng,
        )

    # --- people ------------------------------------------------------------------------------

    async def lookup(self, address: str, *, refresh: bool = False) -> Contact:
        """Resolves an address to its account and devices.

        Raises:
            InvalidAddressError: the address is malformed.
            UnknownAddressError: nobody is registered under it.
        """
        self._require_account()
        return await self._directory.lookup(address, refresh=refresh)

    async def safety_number(self, address: str) -> str:
        """Returns the 60-digit safety number with ``address`` (compare it out of band).

        If no session exists yet, one is started from the peer's published keys.
        """
        account = self._require_account()
        contact = await self.lookup(address)
        protocol = SqliteProtocolStore(self._store)
        name = str(contact.account_id)
        theirs = protocol.get_identity(ProtocolAddress(name, DeviceId(1)))
        if theirs is None:
            await self._start_sessions(contact)
            theirs = protocol.get_identity(ProtocolAddress(name, DeviceId(1)))
        if theirs is None:
            raise ServerError(ErrorCode.KEYS_NOT_SET, "the peer has published no keys")
        fingerprint = Fingerprint.for_accounts(
            local_account=account.account_id,
            local_key=protocol.get_identity_key_pair().public_key,
            remote_account=contact.account_id,
            remote_key=theirs,
        )
        return fingerprint.display

    async def accept_identity(self, address: str) -> None:
        """Accepts a peer's new identity key (after its safety number changed) for sending.

        Fetches the peer's published keys, trusts their identity key, and starts new sessions
        with its devices.
        """
        self._require_account()
        contact = await self.lookup(address)
        await self._start_sessions(contact, accept=True)

    async def _start_sessions(self, contact: Contact, *, accept: bool = False) -> None:
        bundle = await self._http.prekey_bundle(contact.account_id, None)
        protocol = SqliteProtocolStore(self._store)
        try:
            with self._store.transaction():
                if accept:
                    self._store.put_identity(str(contact.account_id), bundle.identity_key)
                for device in bundle.devices:
                    cipher.start_session(
                        protocol,
                        str(contact.account_id),
                        bundle.identity_key,
                        device,
                        now_ms=self._now_ms(),
                        rng=self._rng,
                    )
        except UntrustedIdentityError:
            raise IdentityChangedError(contact.address) from None
        except SignalProtocolError as exc:
            raise PeerContentError(
                f"the published keys of {contact.address} are unusable ({type(exc).__name__})"
            ) from None

    # --- sending -----------------------------------------------------------------------------

    async def send_text(
        self,
        address: str,
        text: str,
        *,
        reply_to: MessageRef | None = None,
        message_id: MessageId | None = None,
    ) -> MessageId:
        """Sends a text (a reply when ``reply_to`` is given); see `send`."""
        return await self.send(address, Text(text, reply_to=reply_to), message_id=message_id)

    async def send(
        self, address: str, body: Body, *, message_id: MessageId | None = None
    ) -> MessageId:
        """Encrypts ``body`` for every device of ``address`` (and our other devices) and sends it.

        Returns once the server has durably queued it for every device. To retry a send whose
        outcome is unknown (the process stopped before this returned), send again with the
        same ``message_id``: the server queues it at most once per device, and the recipient's
        client shows it at most once.

        Returns:
            The message's id (its delivery receipts carry it).

        Raises:
            NotRegisteredError, InvalidAddressError, UnknownAddressError: see `lookup`.
            UsageError: not connected, an empty text, or a message to oneself.
            ServerError: the server refused it.
            TransportError: the connection is closed for good.
        """
        account = self._require_account()
        outgoing = self._outgoing
        if outgoing is None:
            raise UsageError("not connected (call connect first)")
        if isinstance(body, Text) and not body.text.strip():
            raise UsageError("a message must not be empty")
        contact = await self.lookup(address)
        if contact.account_id == account.account_id:
            raise UsageError("you cannot send a message to yourself")
        if message_id is not None and len(message_id) != MESSAGE_ID_BYTES:
            raise UsageError(f"a message id is {MESSAGE_ID_BYTES} bytes")
        now = self._timestamp()
        if message_id is None:
            message_id = MessageId(new_message_id(now, self._rng))
        try:
            plaintext = encode_content(Content(body, sent_at=now))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            accepted = await outgoing.deliver(
                contact.account_id, set(contact.devices), message_id, now, plaintext
            )
        except ServerError as exc:
            if exc.code != ErrorCode.UNKNOWN_ACCOUNT:
                raise
            # The cached contact is out of date (the address now names another account).
            contact = await self.lookup(address, refresh=True)
            accepted = await outgoing.deliver(
                contact.account_id, set(contact.devices), message_id, now, plaintext
            )
        if accepted != set(contact.devices):
            self._directory.update_devices(contact, accepted)
        self._store.put_sent(message_id, contact.account_id, plaintext, timestamp=now)
        others = self._own_devices - {account.device_id}
        if others and isinstance(body, Text | Reaction | Edit | Delete):
            transcript = SentTranscript(
                to_address=contact.address,
                to_account=str(contact.account_id),
                message_id=message_id,
                message=body,
            )
            self._own_devices = {account.device_id} | await outgoing.deliver(
                account.account_id,
                others,
                message_id,
                now,
                encode_content(Content(transcript, sent_at=now)),
            )
        return message_id

    def _timestamp(self) -> int:
        # Timestamps are unique per sender, 1:1 and group messages alike: a retry request
        # names a message by its timestamp.
        now = max(self._now_ms(), self._last_timestamp + 1)
        self._last_timestamp = now
        return now

    # --- receiving ---------------------------------------------------------------------------

    async def next_event(self) -> Event:
        """Waits for the next stored event not yet returned by this process.

        Call `handled` once the application has dealt with it.

        Raises:
            UsageError: not connected and nothing stored is left.
            TransportError: the channel stopped for good while waiting (e.g. another
                connection of this device replaced this one).
        """
        while True:
            items = self._store.inbox(after=self._cursor, limit=1)
            if items:
                self._cursor = items[0].id
                return event_from_inbox(items[0])
            incoming = self._require_incoming()
            channel = self._channel
            if channel is None:
                raise UsageError("not connected (call connect first)")
            incoming.stored.clear()
            stored = asyncio.ensure_future(incoming.stored.wait())
            closed = asyncio.ensure_future(channel.wait_closed())
            try:
                done, _ = await asyncio.wait({stored, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stored.cancel()
                closed.cancel()
            if stored not in done:
                raise TransportError(channel.closed_reason or "the connection was closed")

    def handled(self, event: Event) -> None:
        """Marks an event as handled: it is deleted and never returned again."""
        self._store.remove_from_inbox(event.id)

    def pending_events(self) -> list[Event]:
        """Returns the stored events not yet returned by this process, without waiting."""
        items = self._store.inbox(after=self._cursor, limit=1000)
        if items:
            self._cursor = items[-1].id
        return [event_from_inbox(item) for item in items]

    async def events(self) -> AsyncIterator[Event]:
        """Yields incoming events forever, each once; an event counts as handled when the
        application asks for the next one."""
        while True:
            event = await self.next_event()
            yield event
            self.handled(event)


def _auth(account: Account) -> DeviceAuth:
    return DeviceAuth(account.account_id, account.device_id, account.password)


def _identity(account: Account) -> IdentityKeyPair:
    return IdentityKeyPair(
        PublicKey.deserialize(account.identity_public),
        PrivateKey.deserialize(account.identity_private),
    )
