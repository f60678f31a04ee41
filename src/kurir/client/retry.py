"""Decryption-failure retries: asking a sender to resend, and answering such a request.

Owns: the retry request in libsignal's wire format (a ``DecryptionErrorMessage`` inside a
``PlaintextContent``), and `Retries`, which asks for and answers retries through `Outgoing`
(and, for our group messages, through `GroupResends`). It knows no sockets and decrypts
nothing; the `Client` runs its coroutines in the background.

The flow follows Signal's:

1. a device that cannot decrypt a message from (account ``A``, device ``d``) sends ``A`` an
   envelope of type 8 (PLAINTEXT_CONTENT) whose body is a `RetryRequest`: the failed message's
   timestamp, ``d``, and, if the message was a `SignalMessage`, its ratchet key. It is not
   encrypted (there is no working session to encrypt it with) and carries nothing secret. The
   server authenticates and stamps its sender, so a request can only come from the device it
   names as the requester. Like any send, it goes to every device of ``A``;
2. device ``d`` of ``A`` finds the message it sent to the requester with that timestamp in its
   bounded store of recent sends (client timestamps are unique per sender); unless the request
   names a ratchet key other than the current one of its session with the requesting device
   (then the session was already renewed), it forgets that session; and it sends the same
   content again under a new message id, with ``resend_of`` = the original id inside the
   ciphertext (a new session starts from a fresh prekey bundle if needed);
3. the requester shows the resent message under the original id, once (its dedup is on it).

Group messages (Sender Keys) follow Signal's sender key retry: a device that cannot decrypt a
``SenderKeyMessage`` (typically: it was added to the group while the sender was sending, so
the sender never gave it its key) asks the same way, without a ratchet key (libsignal's
``DecryptionErrorMessage.forOriginal`` with ``CiphertextMessageType.SenderKey``). The sender
finds no 1:1 message with that timestamp, finds the group message instead, and
`GroupResends.resend` answers: after checking with the server that the requesting device is
still a member device (a removed member is never sent anything), it gives the device its
sender key over the 1:1 session, then resends the message's content 1:1 with ``resend_of``.

Each (timestamp, requesting device) pair is answered at most once per process, so a message
that keeps failing cannot make two devices loop.

Format (libsignal ``rust/protocol/src/protocol.rs`` and ``proto/service.proto``): the byte
``0xC0``, then the protobuf ``Content { bytes decryption_error_message = 8; }`` holding
``DecryptionErrorMessage { bytes ratchet_key = 1; uint64 timestamp = 2; uint32 device_id = 3; }``,
then the padding boundary byte ``0x80``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

import msgspec

from kurir.client import cipher
from kurir.client.content import decode_content, encode_content
from kurir.client.directory import Directory
from kurir.client.errors import PeerContentError
from kurir.client.events import MessageId
from kurir.client.keystore import SqliteProtocolStore
from kurir.client.outgoing import Outgoing
from kurir.client.store import ClientStore
from kurir.crypto import protos
from kurir.crypto.curve import Rng
from kurir.crypto.errors import SignalProtocolError
from kurir.crypto.messages import (
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
    deserialize_ciphertext,
)
from kurir.wire.frames import EnvelopeType
from kurir.wire.message_id import new_message_id

__all__ = [
    "GroupResends",
    "OnUndecryptable",
    "Retries",
    "RetryRequest",
    "decode_retry_request",
    "encode_retry_request",
    "retry_request_for",
]

_log = logging.getLogger(__name__)

PLAINTEXT_CONTEXT_IDENTIFIER_BYTE: Final = 0xC0
PADDING_BOUNDARY_BYTE: Final = 0x80


_MESSAGE_TYPES: Final[dict[int, CiphertextMessageType]] = {
    EnvelopeType.CIPHERTEXT: CiphertextMessageType.WHISPER,
    EnvelopeType.PREKEY_BUNDLE: CiphertextMessageType.PREKEY,
    # a SenderKeyMessage has no ratchet key: its request names none (libsignal does the same)
    EnvelopeType.SENDER_KEY: CiphertextMessageType.SENDERKEY,
}


class GroupResends(Protocol):
    """Answers retry requests for our group messages (`kurir.client.groups.Groups`)."""

    async def resend(self, requester: UUID, device: int, timestamp: int) -> bool:
        """Resends the group message we sent at ``timestamp`` to ``requester`` (with our
        sender key first), if its ``device`` is still a member device.

        Returns:
            False when ``timestamp`` names no group message we sent recently.
        """
        ...


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """Asks a sender device to resend one message.

    Attributes:
        timestamp: the failed message's timestamp (the sender's clock, ms).
        device: the sender device it came from (only that device answers).
        ratchet_key: the sender ratchet key (33 bytes) of the failed `SignalMessage`, if any.
    """

    timestamp: int
    device: int
    ratchet_key: bytes | None = None


OnUndecryptable = Callable[[UUID, int, RetryRequest], None]
"""Called with (sender account, sender device, the retry request to send) for a message that
did not decrypt."""


def retry_request_for(
    envelope_type: int, body: bytes, *, timestamp: int, device: int
) -> RetryRequest:
    """The retry request for an envelope that did not decrypt (libsignal's ``for_original``):
    a `SignalMessage` or `PreKeySignalMessage` names its ratchet key; a ``SenderKeyMessage``
    (type 7) and anything unparseable name none."""
    ratchet_key = None
    kind = _MESSAGE_TYPES.get(envelope_type)
    if kind is not None and kind is not CiphertextMessageType.SENDERKEY:
        try:
            message = deserialize_ciphertext(kind, body)
        except SignalProtocolError:
            message = None  # unparseable: ask without a ratchet key
        match message:
            case SignalMessage():
                ratchet_key = message.sender_ratchet_key.serialize()
            case PreKeySignalMessage():
                ratchet_key = message.message.sender_ratchet_key.serialize()
    return RetryRequest(timestamp=timestamp, device=device, ratchet_key=ratchet_key)


def encode_retry_request(request: RetryRequest) -> bytes:
    """Serializes a retry request as libsignal's ``PlaintextContent`` (a type-8 body)."""
    inner = protos.DecryptionErrorMessageProto(
        timestamp=request.timestamp, device_id=request.device
    )
    if request.ratchet_key is not None:
        inner.ratchet_key = request.ratchet_key
    content = protos.ContentProto(decryption_error_message=inner.SerializeToString())
    return (
        bytes((PLAINTEXT_CONTEXT_IDENTIFIER_BYTE,))
        + bytes(content.SerializeToString())
        + bytes((PADDING_BOUNDARY_BYTE,))
    )


def decode_retry_request(body: bytes) -> RetryRequest | None:
    """Parses a type-8 body; returns None for anything that is not a usable retry request."""
    if len(body) < 2 or body[0] != PLAINTEXT_CONTEXT_IDENTIFIER_BYTE:
        return None
    unpadded = body[1:].rstrip(b"\x00")
    if not unpadded or unpadded[-1] != PADDING_BOUNDARY_BYTE:
        return None
    try:
        content = protos.parse(protos.ContentProto, unpadded[:-1])
        if not content.HasField("decryption_error_message"):
            return None
        inner = protos.parse(protos.DecryptionErrorMessageProto, content.decryption_error_message)
    except ValueError:
        return None
    if not inner.HasField("timestamp") or not inner.HasField("device_id"):
        return None
    if not 1 <= inner.device_id <= 2**31 - 1 or inner.timestamp > 2**63 - 1:
        return None
    ratchet_key = bytes(inner.ratchet_key) if inner.HasField("ratchet_key") else None
    if ratchet_key is not None and len(ratchet_key) != 33:
        return None
    return RetryRequest(
        timestamp=int(inner.timestamp), device=int(inner.device_id), ratchet_key=ratchet_key
    )


class Retries:
    """Both sides of decryption-failure retries for one connected client.

    Args:
        store: the local store (recent sends, sessions, control ids).
        protocol_store: the Signal stores over ``store`` (to read a session's ratchet key).
        directory: the contact cache (device lists).
        outgoing: the send path.
        device_id: this device's number.
        now_ms: the clock.
        rng: randomness for message ids.
        groups: answers requests that name one of our group messages (None: they are not
            answered).
    """

    def __init__(
        self,
        store: ClientStore,
        protocol_store: SqliteProtocolStore,
        directory: Directory,
        outgoing: Outgoing,
        *,
        device_id: int,
        now_ms: Callable[[], int],
        rng: Rng,
        groups: GroupResends | None = None,
    ) -> None:
        self._groups = groups
        self._store = store
        self._protocol = protocol_store
        self._directory = directory
        self._outgoing = outgoing
        self._device_id = device_id
        self._now_ms = now_ms
        self._rng = rng
        self._answered: set[tuple[int, UUID, int]] = set()

    async def ask_for_resend(self, sender: UUID, device: int, request: RetryRequest) -> None:
        """Sends ``request`` to every device of ``sender`` (step 1)."""
        await self._outgoing.deliver_unencrypted(
            sender,
            self._devices(sender, device),
            self._new_id(),
            self._now_ms(),
            encode_retry_request(request),
        )

    def should_answer(self, requester: UUID, device: int, request: RetryRequest) -> bool:
        """Tells whether a request is for this device and not answered yet (then it is, once)."""
        if request.device != self._device_id:
            return False  # addressed to another of our devices
        key = (request.timestamp, requester, device)
        if key in self._answered:
            return False
        self._answered.add(key)
        return True

    async def resend(self, requester: UUID, device: int, request: RetryRequest) -> None:
        """Sends the requested message again to ``requester`` (step 2): a 1:1 message we sent
        it, else one of our group messages (`GroupResends`)."""
        name = str(requester)
        current = cipher.sender_ratchet_key(self._protocol, name, device)
        sent = self._store.sent_to(requester, request.timestamp)
        if sent is None:
            if request.ratchet_key is not None and request.ratchet_key == current:
                # a 1:1 message of ours with that timestamp failed (a group message's sender
                # key, which is not kept): the session is broken, start a new one
                self._store.delete_session(name, device)
            if self._groups is None or not await self._groups.resend(
                requester, device, request.timestamp
            ):
                _log.info("a retry request names no message recently sent to its requester")
            return
        try:
            original = decode_content(sent.content)
        except PeerContentError:
            return
        if request.ratchet_key is None or request.ratchet_key == current:
            # The requester lacks the state of this session: start a new one from a bundle.
            self._store.delete_session(name, device)
        resent = msgspec.structs.replace(original, resend_of=sent.message_id)
        await self._outgoing.deliver(
            requester,
            self._devices(requester, device),
            self._new_id(),
            self._now_ms(),
            encode_content(resent),
        )

    def _devices(self, account: UUID, device: int) -> set[int]:
        contact = self._directory.known(account)
        return set(contact.devices) if contact is not None else {device}

    def _new_id(self) -> MessageId:
        # Our own control sends: their delivery receipts are not shown to the application.
        message_id = MessageId(new_message_id(self._now_ms(), self._rng))
        self._store.mark_control(message_id)
        return message_id
