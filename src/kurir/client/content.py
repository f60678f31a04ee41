"""The plaintext that travels inside a Signal ciphertext: typed, versioned, padded.

Owns: the `Content` structure and its codec (`encode_content` / `decode_content`), and the
padding applied before encryption. It knows nothing of sessions, transports or storage: the
client encodes a `Content`, pads it, and hands the bytes to the session cipher; on receipt it
does the reverse.

Format (a versioned contract, see STYLE.md §7):

* MessagePack (via msgspec) of a `Content` map ``{"v": 1, "sent_at": ms, "body": {...}}``.
  The body is a tagged union on the key ``"kind"``; each kind is a small frozen Struct.
* Adding a kind (attachment pointer, group change) or an optional field with a default is
  backwards compatible: old readers skip unknown fields, and report an unknown kind as
  `PeerContentError` (the client then surfaces it as unsupported content, never a crash).
  Changing the meaning of a field or removing one needs ``v`` to be raised; a reader refuses a
  ``v`` greater than `CONTENT_VERSION`.
* Padding (as Signal's ``PushTransportDetails``): the encoded bytes, then ``0x80``, then zero
  bytes up to the next multiple of `PADDING_BLOCK` (160) bytes. The padded length hides the
  exact length of short messages from the server. Unpadding strips trailing zeros and requires
  the ``0x80`` marker.

A resent message (after the recipient could not decrypt it, see `kurir.client.retry`) carries
``resend_of``, the id it was first sent under.

Kinds: `Text` (a reply is a `Text` with ``reply_to``), `Reaction`, `Edit`, `Delete`,
`Receipt` (delivered / read), `Typing`, and `SentTranscript` (what this account sent from
another of its devices, so that every own device shows the conversation). Groups (issue 6,
`kurir.client.groups`) add `SenderKeyDistribution` (a member device's sender key, sent inside
a 1:1 session), `GroupMessage` (a text, reaction, edit or delete in a group, encrypted once with
the sender key) and `GroupChange` (an encrypted announcement of a membership change).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import msgspec

from kurir.client.errors import PeerContentError

__all__ = [
    "CONTENT_VERSION",
    "PADDING_BLOCK",
    "Body",
    "Content",
    "Delete",
    "Edit",
    "GroupAction",
    "GroupChange",
    "GroupMessage",
    "MessageRef",
    "Reaction",
    "Receipt",
    "ReceiptKind",
    "SenderKeyDistribution",
    "SenderKeyRequest",
    "SentTranscript",
    "Text",
    "Typing",
    "decode_content",
    "encode_content",
    "pad",
    "unpad",
]

CONTENT_VERSION: Final = 1
"""The content version this client writes and the highest it reads."""
PADDING_BLOCK: Final = 160
"""Padded plaintexts are a multiple of this many bytes (Signal's value)."""
MAX_TEXT_CHARS: Final = 16_000
"""Longest text body accepted, in characters (bodies must fit the wire's 64 KiB limit)."""


class MessageRef(msgspec.Struct, frozen=True):
    """Names one earlier message of a conversation.

    Attributes:
        author: the account id (UUID text) of the message's sender.
        message_id: the 16-byte client-chosen message id.
    """

    author: str
    message_id: bytes


class Text(msgspec.Struct, frozen=True, tag_field="kind", tag="text"):
    """A text message; with ``reply_to`` it is a reply (a quote of an earlier message).

    Attributes:
        text: the message text.
        reply_to: the message this one answers, or None.
    """

    text: str
    reply_to: MessageRef | None = None


class Reaction(msgspec.Struct, frozen=True, tag_field="kind", tag="reaction"):
    """An emoji reaction to a message, or its removal.

    Attributes:
        target: the message reacted to.
        emoji: the reaction.
        remove: True to take back an earlier reaction.
    """

    target: MessageRef
    emoji: str
    remove: bool = False


class Edit(msgspec.Struct, frozen=True, tag_field="kind", tag="edit"):
    """A new text for one of the sender's own earlier messages.

    Attributes:
        target: the edited message (its author must be the sender).
        text: the replacement text.
    """

    target: MessageRef
    text: str


class Delete(msgspec.Struct, frozen=True, tag_field="kind", tag="delete"):
    """Deletes one of the sender's own earlier messages for everyone.

    Attributes:
        target: the deleted message (its author must be the sender).
    """

    target: MessageRef


class ReceiptKind(StrEnum):
    """What a recipient's receipt says about messages."""

    DELIVERED = "delivered"
    READ = "read"


class Receipt(msgspec.Struct, frozen=True, tag_field="kind", tag="receipt"):
    """An end-to-end receipt from the recipient's application (unlike the server's receipt).

    Attributes:
        receipt: delivered or read.
        message_ids: the receipted messages (16 bytes each).
    """

    receipt: ReceiptKind
    message_ids: list[bytes]


class Typing(msgspec.Struct, frozen=True, tag_field="kind", tag="typing"):
    """A typing indicator.

    Attributes:
        started: True when the sender started typing, False when it stopped.
    """

    started: bool


class SentTranscript(msgspec.Struct, frozen=True, tag_field="kind", tag="sent"):
    """A copy, for this account's other devices, of a message sent from one of its devices.

    Attributes:
        to_address: the recipient's address (``app:identifier``).
        to_account: the recipient's account id (UUID text).
        message_id: the id of the sent message.
        message: what was sent.
    """

    to_address: str
    to_account: str
    message_id: bytes
    message: Text | Reaction | Edit | Delete


class SenderKeyDistribution(msgspec.Struct, frozen=True, tag_field="kind", tag="sender_key"):
    """A member device's sender key for a group (sent only inside a 1:1 session).

    Attributes:
        group_id: the group (UUID text); also the sender key's distribution id.
        distribution: a serialized libsignal ``SenderKeyDistributionMessage``.
    """

    group_id: str
    distribution: bytes


class SenderKeyRequest(msgspec.Struct, frozen=True, tag_field="kind", tag="sender_key_request"):
    """Asks a member device (inside a 1:1 session) to give its sender key again: one of its
    group messages arrived before its key (e.g. we joined while it was sending).

    Attributes:
        group_id: the group (UUID text).
    """

    group_id: str


class GroupMessage(msgspec.Struct, frozen=True, tag_field="kind", tag="group"):
    """A message in a group, encrypted once with the sender's sender key.

    Attributes:
        group_id: the group (UUID text).
        message: what was said.
    """

    group_id: str
    message: Text | Reaction | Edit | Delete


class GroupAction(StrEnum):
    """What changed in a group."""

    CREATED = "created"
    ADDED = "added"
    REMOVED = "removed"
    LEFT = "left"
    PROMOTED = "promoted"


class GroupChange(msgspec.Struct, frozen=True, tag_field="kind", tag="group_change"):
    """An announcement, encrypted like any group message, of a change to the group.

    Attributes:
        group_id: the group (UUID text).
        action: what changed.
        name: the group's name after the change.
        targets: the account ids (UUID text) the change is about (added, removed, promoted).
        revision: the server's revision of the group after the change.
    """

    group_id: str
    action: GroupAction
    name: str
    targets: list[str]
    revision: int


Body = (
    Text
    | Reaction
    | Edit
    | Delete
    | Receipt
    | Typing
    | SentTranscript
    | SenderKeyDistribution
    | SenderKeyRequest
    | GroupMessage
    | GroupChange
)
"""Every content kind this version knows."""


class Content(msgspec.Struct, frozen=True):
    """The versioned plaintext of one message.

    Attributes:
        body: what the message says.
        sent_at: the sender's clock at sending, in milliseconds since the epoch.
        v: the content version; readers refuse a version newer than `CONTENT_VERSION`.
        resend_of: set when this is a resend, after a decryption-failure retry request, of the
            message with this id; the recipient shows it under that id, at most once.
    """

    body: Body
    sent_at: int
    v: int = CONTENT_VERSION
    resend_of: bytes | None = None


class _Header(msgspec.Struct):
    # Only the version is read first, so that a newer content is refused clearly.
    v: int


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Content)
_header_decoder: Final = msgspec.msgpack.Decoder(_Header)


def encode_content(content: Content) -> bytes:
    """Encodes and pads `content`, ready for the session cipher.

    Raises:
        ValueError: a text is longer than `MAX_TEXT_CHARS`.
    """
    for text in _texts(content.body):
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")
    return pad(_encoder.encode(content))


def decode_content(padded: bytes) -> Content:
    """Unpads and decodes a decrypted plaintext.

    Raises:
        PeerContentError: bad padding, malformed data, an unknown kind, or a newer version.
    """
    data = unpad(padded)
    try:
        header = _header_decoder.decode(data)
    except msgspec.DecodeError:
        raise PeerContentError("content is malformed") from None
    if header.v > CONTENT_VERSION:
        raise PeerContentError(f"content version {header.v} is newer than this client")
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise PeerContentError(f"content is not understood: {exc}") from None
    except msgspec.DecodeError:
        raise PeerContentError("content is malformed") from None


def pad(data: bytes) -> bytes:
    """Appends ``0x80`` and zeros up to the next multiple of `PADDING_BLOCK` bytes."""
    padded_len = (len(data) + 1 + PADDING_BLOCK - 1) // PADDING_BLOCK * PADDING_BLOCK
    return data + b"\x80" + bytes(padded_len - len(data) - 1)


def unpad(padded: bytes) -> bytes:
    """Removes padding made by `pad`.

    Raises:
        PeerContentError: the ``0x80`` marker is missing.
    """
    stripped = padded.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise PeerContentError("content padding is invalid")
    return stripped[:-1]


def _texts(body: Body) -> list[str]:
    match body:
        case Text(text=text) | Edit(text=text):
            return [text]
        case SentTranscript(message=inner) | GroupMessage(message=inner):
            return _texts(inner)
        case _:
            return []
