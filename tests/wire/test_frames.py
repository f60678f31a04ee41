"""WebSocket frames: round trips, limits, malformed input (no sockets)."""

from __future__ import annotations

import contextlib
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kurir.wire.errors import ErrorCode, FrameError
from kurir.wire.frames import (
    Ack,
    DeviceMessage,
    Drained,
    Envelope,
    EnvelopeType,
    ErrorFrame,
    Result,
    ResultError,
    Send,
    ServerFrame,
    decode_client_frame,
    decode_server_frame,
    encode_frame,
)
from kurir.wire.limits import MAX_BODY_BYTES, MAX_FRAME_BYTES, MAX_MESSAGES_PER_SEND

_FUZZ = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
ACCOUNT = UUID("0b5c7c2e-8f3a-4d6b-9a51-3f1f1b2c4d5e")


def _send(**changes: object) -> dict[str, object]:
    frame: dict[str, object] = {
        "op": "send",
        "id": 7,
        "to": str(ACCOUNT),
        "message_id": bytes(16),
        "timestamp": 1_700_000_000_000,
        "messages": [{"device": 1, "registration_id": 42, "type": 1, "body": b"ct"}],
    }
    frame.update(changes)
    return frame


def test_send_round_trip() -> None:
    send = Send(
        id=1,
        to=ACCOUNT,
        message_id=b"m" * 16,
        timestamp=5,
        messages=[DeviceMessage(device=2, registration_id=9, type=3, body=b"x")],
    )
    assert decode_client_frame(encode_frame(send)) == send
    assert decode_client_frame(encode_frame(Ack(seqs=[1, 2]))) == Ack(seqs=[1, 2])


def test_server_frames_round_trip() -> None:
    frames: list[ServerFrame] = [
        Result(id=1, ok=True),
        Result(id=2, ok=False, error=ResultError("mismatched_devices", "m", missing=[2])),
        Envelope(
            seq=1,
            type=EnvelopeType.CIPHERTEXT,
            source=ACCOUNT,
            source_device=1,
            source_address="instagram:@rina",
            message_id=bytes(16),
            timestamp=1,
            server_timestamp=2,
            body=b"b",
        ),
        Envelope(
            seq=2,
            type=EnvelopeType.UNIDENTIFIED_SENDER,
            source=None,
            source_device=None,
            source_address=None,
            message_id=bytes(16),
            timestamp=1,
            server_timestamp=2,
            body=b"",
        ),
        Drained(),
        Drained(expired=3),
        ErrorFrame(code="malformed_frame", message="x"),
    ]
    for frame in frames:
        assert decode_server_frame(encode_frame(frame)) == frame


def test_wire_shape_is_a_map_with_op() -> None:
    raw = msgspec.msgpack.decode(encode_frame(Result(id=3, ok=True)))
    assert raw == {"op": "result", "id": 3, "ok": True}
    assert msgspec.msgpack.decode(encode_frame(Drained())) == {"op": "drained"}


def test_unknown_fields_are_ignored() -> None:
    frame = decode_client_frame(msgspec.msgpack.encode(_send(future_field=1)))
    assert isinstance(frame, Send)


def test_oversized_frame_refused_before_decoding() -> None:
    with pytest.raises(FrameError) as info:
        decode_client_frame(b"\x00" * (MAX_FRAME_BYTES + 1))
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    assert info.value.request_id is None


def test_encode_refuses_oversized() -> None:
    messages = [
        DeviceMessage(device=i + 1, registration_id=1, type=1, body=b"x" * 60_000) for i in range(5)
    ]
    with pytest.raises(FrameError) as info:
        encode_frame(Send(id=1, to=ACCOUNT, message_id=bytes(16), timestamp=0, messages=messages))
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode([1, 2]),
        msgspec.msgpack.encode({"op": "nope"}),
        msgspec.msgpack.encode({"op": "ack", "seqs": [0]}),
        msgspec.msgpack.encode({"op": "ack", "seqs": "1"}),
        msgspec.msgpack.encode({"op": "send"}),
        msgspec.msgpack.encode(_send(id=-1)),
        msgspec.msgpack.encode(_send(id="7")),
    ],
)
def test_malformed_frames_close(data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_client_frame(data)
    assert info.value.code is ErrorCode.MALFORMED_FRAME
    assert info.value.request_id is None


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": bytes(15)},
        {"to": "not-a-uuid"},
        {"timestamp": -1},
        {"messages": [{"device": 1, "registration_id": 1, "type": 5, "body": b""}]},
        {"messages": [{"device": 1, "registration_id": 1, "type": 2, "body": b""}]},
        {"messages": [{"device": 0, "registration_id": 1, "type": 1, "body": b""}]},
        {
            "messages": [
                {"device": 1, "registration_id": 1, "type": 1, "body": b"x" * (MAX_BODY_BYTES + 1)}
            ]
        },
        {"messages": [{"device": 1, "registration_id": 1, "type": 1, "body": b""}] * 2},
        {
            "messages": [
                {"device": i + 1, "registration_id": 1, "type": 1, "body": b""}
                for i in range(MAX_MESSAGES_PER_SEND + 1)
            ]
        },
    ],
)
def test_invalid_send_keeps_its_request_id(changes: dict[str, object]) -> None:
    with pytest.raises(FrameError) as info:
        decode_client_frame(msgspec.msgpack.encode(_send(**changes)))
    assert info.value.code is ErrorCode.INVALID_REQUEST
    assert info.value.request_id == 7


@_FUZZ
@given(st.binary(max_size=512))
def test_fuzz_decoder_only_raises_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_client_frame(data)


@_FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["op", "id", "to", "message_id", "timestamp", "messages", "seqs"]),
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=20),
            st.text(max_size=5),
            st.none(),
            st.just("send"),
        ),
    )
)
def test_fuzz_structured_maps(raw: dict[str, object]) -> None:
    codes: set[ErrorCode] = set()
    try:
        decode_client_frame(msgspec.msgpack.encode(raw))
    except FrameError as exc:
        codes.add(exc.code)
    assert codes <= {ErrorCode.MALFORMED_FRAME, ErrorCode.INVALID_REQUEST}
