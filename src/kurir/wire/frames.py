"""WebSocket frames of the kurir messaging channel and their one codec (MessagePack).

This module owns the typed frames exchanged on ``GET /v1/ws`` (docs/protocol.md §WebSocket),
their validation limits, and encoding/decoding. It is sans-I/O: bytes in, typed frames out,
and never touches a socket.

Every frame is one binary WebSocket message holding one MessagePack map whose ``op`` key names
the frame (msgspec tagged structs). Unknown keys are ignored so peers can add fields.

client -> server: :class:`Send`, :class:`Ack`, :class:`GroupSend`.
server -> client: :class:`Result`, :class:`Envelope`, :class:`Drained`, :class:`ErrorFrame`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec

from kurir.wire.errors import ErrorCode, FrameError
from kurir.wire.limits import (
    MAX_ACK_SEQS,
    MAX_BODY_BYTES,
    MAX_FRAME_BYTES,
    MAX_MESSAGES_PER_SEND,
    MAX_REGISTRATION_ID,
    MESSAGE_ID_BYTES,
)

__all__ = [
    "CLIENT_ENVELOPE_TYPES",
    "Ack",
    "ClientFrame",
    "CloseCode",
    "DeviceMessage",
    "Drained",
    "Envelope",
    "EnvelopeType",
    "ErrorFrame",
    "GroupSend",
    "Result",
    "ResultError",
    "Send",
    "ServerFrame",
    "decode_client_frame",
    "decode_server_frame",
    "encode_frame",
]

DeviceNumber = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
MessageIdBytes = Annotated[
    bytes, msgspec.Meta(min_length=MESSAGE_ID_BYTES, max_length=MESSAGE_ID_BYTES)
]


class EnvelopeType(IntEnum):
    """Envelope types, numbered as Signal's ``Envelope.Type``."""

    CIPHERTEXT = 1
    PREKEY_BUNDLE = 3
    SERVER_DELIVERY_RECEIPT = 5
    UNIDENTIFIED_SENDER = 6
    SENDER_KEY = 7
    PLAINTEXT_CONTENT = 8


CLIENT_ENVELOPE_TYPES: Final = frozenset(
    {
        EnvelopeType.CIPHERTEXT,
        EnvelopeType.PREKEY_BUNDLE,
        EnvelopeType.UNIDENTIFIED_SENDER,
        EnvelopeType.SENDER_KEY,
        EnvelopeType.PLAINTEXT_CONTENT,
    }
)
"""The envelope types a client may send; type 5 is made only by the server."""


class CloseCode(IntEnum):
    """WebSocket close codes used by the server."""

    PROTOCOL_ERROR = 4000
    REPLACED = 4001
    AUTH = 4003


class DeviceMessage(msgspec.Struct, frozen=True):
    """One ciphertext for one recipient device inside a :class:`Send`."""

    device: DeviceNumber
    registration_id: Annotated[int, msgspec.Meta(ge=0, le=MAX_REGISTRATION_ID)]
    type: Annotated[int, msgspec.Meta(ge=0, le=255)]
    body: Annotated[bytes, msgspec.Meta(max_length=MAX_BODY_BYTES)]


class Send(msgspec.Struct, frozen=True, tag="send", tag_field="op"):
    """Client -> server: deliver one message to every device of one account.

    The server answers with a :class:`Result` carrying the same ``id``.
    """

    id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    to: UUID
    message_id: MessageIdBytes
    timestamp: Millis
    messages: Annotated[list[DeviceMessage], msgspec.Meta(max_length=MAX_MESSAGES_PER_SEND)]


class Ack(msgspec.Struct, frozen=True, tag="ack", tag_field="op"):
    """Client -> server: the envelopes with these ``seqs`` are safely stored; delete them."""

    seqs: Annotated[list[Seq], msgspec.Meta(max_length=MAX_ACK_SEQS)]


class GroupSend(msgspec.Struct, frozen=True, tag="group_send", tag_field="op"):
    """Client -> server: one Sender Key ciphertext for every other device of a group's members.

    The server fans ``body`` out (envelope type 7, SENDER_KEY) to every device of every
    member, the sender's other devices included, in one durable enqueue, then answers with a
    :class:`Result` carrying the same ``id`` (docs/protocol.md §Groups).
    """

    id: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    group_id: UUID
    message_id: MessageIdBytes
    timestamp: Millis
    body: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_BODY_BYTES)]


class ResultError(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why a :class:`Send` failed; ``missing``/``extra``/``stale`` list device ids."""

    code: str
    message: str
    missing: list[int] | None = None
    extra: list[int] | None = None
    stale: list[int] | None = None


class Result(msgspec.Struct, frozen=True, tag="result", tag_field="op", omit_defaults=True):
    """Server -> client: the outcome of the :class:`Send` with this ``id``."""

    id: int
    ok: bool
    error: ResultError | None = None


class Envelope(msgspec.Struct, frozen=True, tag="envelope", tag_field="op"):
    """Server -> client: one stored envelope; acknowledge its ``seq`` with :class:`Ack`."""

    seq: int
    type: int
    source: UUID | None
    source_device: int | None
    source_address: str | None
    message_id: bytes
    timestamp: int
    server_timestamp: int
    body: bytes


class Drained(msgspec.Struct, frozen=True, tag="drained", tag_field="op", omit_defaults=True):
    """Server -> client: everything queued at connect time has been sent.

    ``expired`` counts envelopes that expired unread for this device since the last
    ``drained`` (never silent).
    """

    expired: int = 0


class ErrorFrame(msgspec.Struct, frozen=True, tag="error", tag_field="op"):
    """Server -> client: a protocol violation; the server closes with code 4000 next."""

    code: str
    message: str


ClientFrame = Send | Ack | GroupSend
ServerFrame = Result | Envelope | Drained | ErrorFrame

_encoder: Final = msgspec.msgpack.Encoder()
_client_decoder: Final[msgspec.msgpack.Decoder[ClientFrame]] = msgspec.msgpack.Decoder(ClientFrame)
_server_decoder: Final[msgspec.msgpack.Decoder[ServerFrame]] = msgspec.msgpack.Decoder(ServerFrame)
_loose_decoder: Final = msgspec.msgpack.Decoder()


def encode_frame(frame: ClientFrame | ServerFrame) -> bytes:
    """Encode a frame to one binary WebSocket message.

    Raises:
        FrameError: The encoded frame exceeds the frame limit (``frame_too_large``).
    """
    data = _encoder.encode(frame)
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {MAX_FRAME_BYTES} bytes")
    return data


def decode_client_frame(data: bytes) -> ClientFrame:
    """Decode and validate a frame sent by a client.

    Raises:
        FrameError: Oversized (``frame_too_large``) or malformed (``malformed_frame``).
            When the frame is recognisably a ``send`` with an integer ``id``,
            :attr:`FrameError.request_id` holds it so the server can answer with a failed
            :class:`Result` (code ``invalid_request``) instead of closing.
    """
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {MAX_FRAME_BYTES} bytes")
    try:
        frame = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(data, str(exc)) from None
    except (msgspec.DecodeError, ValueError):
        raise FrameError(ErrorCode.MALFORMED_FRAME, "frame is not valid MessagePack") from None
    if isinstance(frame, Send):
        _check_send(data, frame)
    return frame


def _check_send(data: bytes, frame: Send) -> None:
    devices = [m.device for m in frame.messages]
    if len(set(devices)) != len(devices):
        raise _invalid(data, "a device appears more than once in messages")
    for m in frame.messages:
        if m.type not in CLIENT_ENVELOPE_TYPES:
            raise _invalid(data, f"envelope type {m.type} may not be sent by a client")


def _invalid(data: bytes, message: str) -> FrameError:
    error = FrameError(ErrorCode.MALFORMED_FRAME, message)
    loose: Any
    try:
        loose = _loose_decoder.decode(data)
    except (msgspec.DecodeError, ValueError):  # UnicodeDecodeError is a ValueError
        return error
    if isinstance(loose, dict) and loose.get("op") in ("send", "group_send"):
        request_id = loose.get("id")
        if isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0:
            error.request_id = request_id
            error.code = ErrorCode.INVALID_REQUEST
    return error


def decode_server_frame(data: bytes) -> ServerFrame:
    """Decode a frame sent by the server (used by clients).

    Raises:
        FrameError: Oversized or malformed frame.
    """
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {MAX_FRAME_BYTES} bytes")
    try:
        return _server_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise FrameError(ErrorCode.MALFORMED_FRAME, str(exc)) from None
    except (msgspec.DecodeError, ValueError):
        raise FrameError(ErrorCode.MALFORMED_FRAME, "frame is not valid MessagePack") from None
