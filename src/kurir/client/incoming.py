"""Receiving: envelopes from the channel, decrypted and stored once, then acknowledged.

Owns: the receive path. For each envelope, in the server's order: skip it if its message id
from that sender device was stored before (redelivery after a lost ack); otherwise decrypt it
and store the plaintext in the inbox *in the same transaction* as the session state the
decryption produced; only then acknowledge it, so the server deletes it (and makes the sender's
delivery receipt). A crash anywhere before the commit leaves the envelope on the server and the
session unchanged; a crash after the commit and before the ack makes the server redeliver a
copy that the dedup check drops. Hence every message reaches the application exactly once.

An envelope that cannot be decrypted is stored as an "undecryptable" event and acknowledged
(it would fail again on every redelivery), and the sender is asked to resend it
(`kurir.client.retry`). A resent message is stored under the id it was first sent with, so it
reaches the application once. Envelopes the server reports as expired unread (in ``drained``)
become one `ExpiredEvent`, so that a loss is never silent. A message that replaced a peer's
trusted identity key is preceded by an `IdentityChangedEvent` (the safety number changed).
Server receipts (type 5) are stored as delivery events; retry requests (type 8) are passed on
once. Group messages (type 7) go to `kurir.client.group_store.GroupReceiver`, which asks for a
resend the same way when one does not decrypt; group content that arrives 1:1 is admitted only
as such a resend (`GroupReceiver.admits_direct`). Envelope types this client does not handle
yet (sealed sender) are acknowledged and dropped with a log line.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from uuid import UUID

from kurir.client import cipher
from kurir.client.content import decode_content
from kurir.client.errors import PeerContentError
from kurir.client.group_store import GroupReceiver
from kurir.client.keystore import SqliteProtocolStore
from kurir.client.retry import (
    OnUndecryptable,
    RetryRequest,
    decode_retry_request,
    retry_request_for,
)
from kurir.client.store import ClientStore, InboxKind
from kurir.crypto.curve import Rng
from kurir.crypto.errors import DuplicateMessageError, SignalProtocolError
from kurir.wire.frames import Drained, Envelope, EnvelopeType
from kurir.wire.limits import MESSAGE_ID_BYTES

__all__ = ["EnvelopeTap", "Incoming", "OnRetryRequest", "OnUndecryptable"]

_log = logging.getLogger(__name__)

Ack = Callable[[list[int]], Awaitable[None]]
OnRetryRequest = Callable[[UUID, int, RetryRequest], None]
"""Called with (requester account, requester device, request) for each new retry request."""
EnvelopeTap = Callable[[Envelope], None]
"""Sees every envelope as the server delivered it (metadata and ciphertext; for diagnostics)."""


class Incoming:
    """The receive path of one client; its `handle` is the channel's incoming handler.

    Args:
        store: the local store.
        protocol_store: the Signal store Protocols over ``store``.
        ack: acknowledges envelope sequence numbers to the server.
        rng: randomness for the ratchet.
        tap: called with every envelope before it is handled (diagnostics, the demo).
        on_undecryptable: told about each message that did not decrypt (to ask for a resend).
        on_retry_request: told about each retry request (to resend).
        groups: the receive side of groups (sender keys, group messages).
    """

    def __init__(
        self,
        store: ClientStore,
        protocol_store: SqliteProtocolStore,
        ack: Ack,
        *,
        rng: Rng,
        tap: EnvelopeTap | None = None,
        on_undecryptable: OnUndecryptable | None = None,
        on_retry_request: OnRetryRequest | None = None,
        groups: GroupReceiver | None = None,
    ) -> None:
        self._groups = groups
        self._tap = tap
        self._on_undecryptable = on_undecryptable
        self._on_retry_request = on_retry_request
        self._store = store
        self._protocol = protocol_store
        self._ack = ack
        self._rng = rng
        self.stored = asyncio.Event()
        """Set whenever a new item landed in the inbox (the client clears it)."""
        self.drained = asyncio.Event()
        """Set once the server sent everything that was queued at connect time."""
        self.prekey_messages = 0
        """How many PreKeySignalMessages were handled (they consume one-time prekeys)."""

    async def handle(self, frame: Envelope | Drained) -> None:
        """Handles one frame from the channel (stores, then acknowledges)."""
        match frame:
            case Drained():
                if frame.expired:
                    _log.warning("%d envelopes expired on the server unread", frame.expired)
                    self._store_expired(frame.expired)
                    self.stored.set()
                self.drained.set()
            case Envelope():
                if self._tap is not None:
                    self._tap(frame)
                if self._store_envelope(frame):
                    self.stored.set()
                await self._ack([frame.seq])

    def _store_envelope(self, envelope: Envelope) -> bool:
        source, device = envelope.source, envelope.source_device
        if source is None or device is None:
            _log.warning("dropping an envelope of type %d without a sender", envelope.type)
            return False
        if envelope.type == EnvelopeType.SERVER_DELIVERY_RECEIPT:
            if self._store.is_control(envelope.message_id):
                return False  # a receipt for a retry request or a resend: not the app's
            return self._add(InboxKind.DELIVERY, envelope, source, device, None)
        if envelope.type == EnvelopeType.PLAINTEXT_CONTENT:
            self._retry_request(envelope, source, device)
            return False
        if envelope.type == EnvelopeType.SENDER_KEY and self._groups is not None:
            return self._groups.store_group_message(envelope, source, device)
        if envelope.type not in (EnvelopeType.CIPHERTEXT, EnvelopeType.PREKEY_BUNDLE):
            _log.warning("dropping an envelope of unsupported type %d", envelope.type)
            return False
        if self._store.seen(InboxKind.MESSAGE, source, device, envelope.message_id):
            return False
        self._protocol.changed_identities.clear()
        try:
            with self._store.transaction():
                plaintext = cipher.decrypt(
                    self._protocol,
                    str(source),
                    device,
                    envelope.type,
                    envelope.body,
                    rng=self._rng,
                )
                if envelope.type == EnvelopeType.PREKEY_BUNDLE:
                    self.prekey_messages += 1
                self._report_changed_identities(envelope, device)
                if self._groups is not None and (
                    self._groups.absorb(plaintext, source, device)
                    or not self._groups.admits_direct(plaintext, source, device)
                ):
                    # a group's sender key (kept by the group store), or a group message sent
                    # 1:1 that answers none of our retry requests: not the application's
                    self._store.mark_seen(InboxKind.MESSAGE, source, device, envelope.message_id)
                    return False
                # A resend shows under its first id; the session update commits either way.
                message_id = _resend_of(plaintext) or envelope.message_id
                return self._add(
                    InboxKind.MESSAGE, envelope, source, device, plaintext, message_id=message_id
                )
        except DuplicateMessageError:
            return False
        except sqlite3.Error:
            raise  # our own storage failed: no ack, the server redelivers it later
        except Exception as exc:
            if isinstance(exc, SignalProtocolError):
                _log.warning("cannot decrypt an envelope: %s", type(exc).__name__)
            else:  # a bug in decoding; still never let one envelope block the mailbox
                _log.error("decrypting an envelope failed: %s", type(exc).__name__)
            reason = f"cannot decrypt: {type(exc).__name__}".encode()
            stored = self._add(InboxKind.UNDECRYPTABLE, envelope, source, device, reason)
            if stored and self._on_undecryptable is not None:
                request = retry_request_for(
                    envelope.type, envelope.body, timestamp=envelope.timestamp, device=device
                )
                self._on_undecryptable(source, device, request)
            return stored

    def _report_changed_identities(self, envelope: Envelope, device: int) -> None:
        # Decrypting replaced a trusted identity key: the safety number changed.
        for name in self._protocol.changed_identities:
            self._store.add_to_inbox(
                kind=InboxKind.IDENTITY_CHANGED,
                source=UUID(name),
                source_device=device,
                source_address=envelope.source_address,
                message_id=secrets.token_bytes(MESSAGE_ID_BYTES),
                timestamp=envelope.timestamp,
                server_timestamp=envelope.server_timestamp,
                content=None,
            )
        self._protocol.changed_identities.clear()

    def _store_expired(self, count: int) -> None:
        # The server reports each expiry once; the application hears of it once too.
        self._store.add_to_inbox(
            kind=InboxKind.EXPIRED,
            source=UUID(int=0),
            source_device=0,
            source_address=None,
            message_id=secrets.token_bytes(MESSAGE_ID_BYTES),
            timestamp=0,
            server_timestamp=0,
            content=str(count).encode(),
        )

    def _retry_request(self, envelope: Envelope, source: UUID, device: int) -> None:
        request = decode_retry_request(envelope.body)
        if request is None:
            _log.warning("dropping a malformed retry request")
            return
        if not self._store.mark_seen(InboxKind.RETRY_REQUEST, source, device, envelope.message_id):
            return
        if self._on_retry_request is not None:
            self._on_retry_request(source, device, request)

    def _add(
        self,
        kind: str,
        envelope: Envelope,
        source: UUID,
        device: int,
        content: bytes | None,
        *,
        message_id: bytes | None = None,
    ) -> bool:
        return self._store.add_to_inbox(
            kind=kind,
            source=source,
            source_device=device,
            source_address=envelope.source_address,
            message_id=envelope.message_id if message_id is None else message_id,
            timestamp=envelope.timestamp,
            server_timestamp=envelope.server_timestamp,
            content=content,
        )


def _resend_of(plaintext: bytes) -> bytes | None:
    try:
        content = decode_content(plaintext)
    except PeerContentError:
        return None  # stored as is; the application sees it as unreadable
    resend_of = content.resend_of
    return resend_of if resend_of is not None and len(resend_of) == MESSAGE_ID_BYTES else None
