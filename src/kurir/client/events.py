"""What the `Client` hands to the application: typed incoming events.

Owns: the event types (`MessageEvent`, `DeliveryEvent`, `UndecryptableEvent`,
`UnreadableEvent`, `ExpiredEvent`, `IdentityChangedEvent`) and their
construction from stored inbox items. Knows nothing of sockets or ciphers: every event here
was already decrypted and durably stored before its envelope was acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType
from uuid import UUID

from kurir.client.content import Body, decode_content
from kurir.client.errors import PeerContentError
from kurir.client.store import InboxItem, InboxKind

__all__ = [
    "DeliveryEvent",
    "Event",
    "EventId",
    "ExpiredEvent",
    "IdentityChangedEvent",
    "MessageEvent",
    "MessageId",
    "UndecryptableEvent",
    "UnreadableEvent",
    "event_from_inbox",
]

MessageId = NewType("MessageId", bytes)
"""A 16-byte client-chosen message id."""

EventId = NewType("EventId", int)
"""The local, increasing id of an event (its inbox row)."""


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message from a peer (or a transcript from another of our own devices).

    Attributes:
        id: the local event id.
        sender: the sender's address (``app:identifier``) as the server vouched for it, or the
            sender's account id as text if the server gave none.
        sender_account: the sender's account id.
        sender_device: the sending device.
        message_id: the message's id (use it to reply, react, edit or delete).
        sent_at: the sender's clock at sending (ms).
        server_timestamp: when the server accepted it (ms).
        body: what the message says (`kurir.client.content`).
    """

    id: EventId
    sender: str
    sender_account: UUID
    sender_device: int
    message_id: MessageId
    sent_at: int
    server_timestamp: int
    body: Body


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """The server's receipt: a recipient device stored one of our messages.

    Attributes:
        id: the local event id.
        recipient_account: the account whose device acknowledged the message.
        recipient_device: that device.
        message_id: the id of our message.
        server_timestamp: when the receipt was made (ms).
    """

    id: EventId
    recipient_account: UUID
    recipient_device: int
    message_id: MessageId
    server_timestamp: int


@dataclass(frozen=True, slots=True)
class UndecryptableEvent:
    """A message arrived that could not be decrypted (its content is lost).

    Attributes:
        id: the local event id.
        sender: the sender's address, or account id as text.
        sender_account: the sender's account id.
        sender_device: the sending device.
        message_id: the message's id.
        reason: a short explanation (no secrets).
    """

    id: EventId
    sender: str
    sender_account: UUID
    sender_device: int
    message_id: MessageId
    reason: str


@dataclass(frozen=True, slots=True)
class UnreadableEvent:
    """A message was decrypted but its content is malformed or of a newer version.

    Attributes:
        id: the local event id.
        sender: the sender's address, or account id as text.
        message_id: the message's id.
        reason: why it cannot be shown.
    """

    id: EventId
    sender: str
    message_id: MessageId
    reason: str


@dataclass(frozen=True, slots=True)
class ExpiredEvent:
    """Envelopes for this device expired on the server before they were delivered.

    Their content is lost; the senders are not known to this device.

    Attributes:
        id: the local event id.
        count: how many envelopes expired.
    """

    id: EventId
    count: int


@dataclass(frozen=True, slots=True)
class IdentityChangedEvent:
    """A peer's identity key changed (re-registration, a new phone, or an attack): the safety
    number with it is different now. Show it to the user and ask them to compare it again.

    Attributes:
        id: the local event id.
        peer: the peer's address as the server vouched for it, or its account id as text.
        peer_account: the peer's account id.
    """

    id: EventId
    peer: str
    peer_account: UUID


Event = (
    MessageEvent
    | DeliveryEvent
    | UndecryptableEvent
    | UnreadableEvent
    | ExpiredEvent
    | IdentityChangedEvent
)
"""Everything `Client.events` yields."""


def event_from_inbox(item: InboxItem) -> Event:
    """Builds the application event of a stored inbox item."""
    sender = item.source_address or str(item.source)
    event_id = EventId(item.id)
    message_id = MessageId(item.message_id)
    if item.kind == InboxKind.IDENTITY_CHANGED:
        return IdentityChangedEvent(event_id, sender, item.source)
    if item.kind == InboxKind.EXPIRED:
        count = int((item.content or b"0").decode("ascii", "replace") or 0)
        return ExpiredEvent(event_id, count)
    if item.kind == InboxKind.DELIVERY:
        return DeliveryEvent(
            event_id, item.source, item.source_device, message_id, item.server_timestamp
        )
    if item.kind == InboxKind.UNDECRYPTABLE or item.content is None:
        reason = (item.content or b"cannot decrypt").decode("utf-8", "replace")
        return UndecryptableEvent(
            event_id, sender, item.source, item.source_device, message_id, reason
        )
    try:
        content = decode_content(item.content)
    except PeerContentError as exc:
        return UnreadableEvent(event_id, sender, message_id, str(exc))
    return MessageEvent(
        id=event_id,
        sender=sender,
        sender_account=item.source,
        sender_device=item.source_device,
        message_id=message_id,
        sent_at=content.sent_at,
        server_timestamp=item.server_timestamp,
        body=content.body,
    )
