"""The load generator's WebSocket codec (RFC 6455), without sockets."""

from __future__ import annotations

import struct

import pytest

from kurir.bench.load import percentiles
from kurir.bench.rawws import (
    OP_BINARY,
    OP_PING,
    FrameParser,
    HandshakeError,
    ProtocolViolation,
    WsFrame,
    apply_mask,
    check_handshake,
    encode_frame,
)


def server_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_parser_splits_frames_of_every_length_encoding(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    stream = server_frame(OP_BINARY, payload) + server_frame(OP_PING, b"p")

    assert FrameParser().feed(stream) == [WsFrame(OP_BINARY, payload), WsFrame(OP_PING, b"p")]


def test_parser_waits_for_whole_frames_fed_byte_by_byte() -> None:
    stream = server_frame(OP_BINARY, b"x" * 300) + server_frame(OP_BINARY, b"yz")
    parser = FrameParser()

    frames = [frame for i in range(len(stream)) for frame in parser.feed(stream[i : i + 1])]

    assert frames == [WsFrame(OP_BINARY, b"x" * 300), WsFrame(OP_BINARY, b"yz")]


@pytest.mark.parametrize(
    "head",
    [
        b"\x02\x00",  # not final: a fragment
        b"\x82\x80\x00\x00\x00\x00",  # masked: servers never mask
        b"\xc2\x00",  # reserved bit: an extension nobody negotiated
    ],
)
def test_parser_refuses_what_it_does_not_support(head: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        FrameParser().feed(head)


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    payload = b"hello kurir" * 20
    data = encode_frame(OP_BINARY, payload)

    assert data[0] == 0x80 | OP_BINARY
    assert data[1] == 0x80 | 126  # masked, 16-bit length
    assert struct.unpack("!H", data[2:4])[0] == len(payload)
    mask = data[4:8]
    assert apply_mask(data[8:], mask) == payload


def test_handshake_accept_key_of_rfc_6455_section_1_3() -> None:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    good = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    check_handshake(good, key)
    with pytest.raises(HandshakeError):
        check_handshake(good.replace(b"s3pP", b"AAAA"), key)
    with pytest.raises(HandshakeError):
        check_handshake(b"HTTP/1.1 403 Forbidden", key)


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    summary = percentiles([i * 1_000_000 for i in range(1, 1001)])  # 1..1000 ms

    assert summary is not None
    assert (summary.p50_ms, summary.p99_ms, summary.p999_ms, summary.max_ms) == (
        500.0,
        990.0,
        999.0,
        1000.0,
    )
    assert percentiles([]) is None
