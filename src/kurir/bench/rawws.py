"""A minimal sans-I/O WebSocket client codec (RFC 6455) for the load generator.

This module owns the client side of the opening handshake (request bytes, checking the 101
answer and its ``Sec-WebSocket-Accept``) and framing: masking client frames (RFC 6455 §5.3),
parsing the server's unmasked frames. It exists because a full WebSocket client library costs
more CPU per message than the server under test spends; with this codec one generator process
keeps thousands of connections busy. It does not support extensions, fragmented messages or
TLS: kurir's server sends none of the first two, and the bench runs on loopback. It never
touches a socket.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_c_apply_mask: Callable[[bytes, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - websockets is a dependency and ships the C extension
    _c_apply_mask = None

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameParser",
    "HandshakeError",
    "ProtocolViolation",
    "WsFrame",
    "apply_mask",
    "check_handshake",
    "encode_frame",
    "handshake_request",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class HandshakeError(Exception):
    """The server did not upgrade the connection (status or accept key wrong)."""


class ProtocolViolation(Exception):
    """The server sent a frame this codec does not accept (fragmented, masked, reserved bits)."""


@dataclass(frozen=True, slots=True)
class WsFrame:
    """One complete frame from the server."""

    opcode: int
    payload: bytes


def handshake_request(host: str, path: str, headers: dict[str, str]) -> tuple[bytes, bytes]:
    """The opening handshake (RFC 6455 §4.1).

    Returns:
        (request bytes, the ``Sec-WebSocket-Key`` sent); pass the key to :func:`check_handshake`.
    """
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def check_handshake(response_head: bytes, key: bytes) -> None:
    """Check the server's answer head (up to and excluding the blank line).

    Raises:
        HandshakeError: Not ``101`` or a wrong ``Sec-WebSocket-Accept`` (RFC 6455 §4.2.2).
    """
    lines = response_head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        raise HandshakeError(lines[0].decode(errors="replace"))
    expected = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # noqa: S324 - RFC 6455
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            if value.strip() != expected:
                raise HandshakeError("wrong Sec-WebSocket-Accept")
            return
    raise HandshakeError("no Sec-WebSocket-Accept")


_mask_bytes: Final = random.Random(os.urandom(16)).randbytes  # noqa: S311 - see encode_frame


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3)."""
    if _c_apply_mask is not None:
        return bytes(_c_apply_mask(data, mask))
    n = len(data)
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455 §5.2), final unless ``fin`` is False; a fresh mask
    each time.

    The mask comes from :mod:`random`, not the operating system: it only has to differ from
    frame to frame (its purpose, against proxies' caches poisoned by scripts in browsers,
    does not arise for a load generator on loopback), and ``os.urandom`` is a system call per
    frame, about an eighth of the generator's time.
    """
    n = len(payload)
    first = 0x80 | opcode if fin else opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = _mask_bytes(4)
    return head + mask + apply_mask(payload, mask)


class FrameParser:
    """Splits the server's byte stream into frames; feed bytes, read complete frames."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[WsFrame]:
        """Add received bytes; return every frame now complete, in order.

        Raises:
            ProtocolViolation: A fragmented, masked or reserved-bit frame.
        """
        buf = self._buffer
        buf += data
        frames: list[WsFrame] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            if first & 0x70 or not first & 0x80 or second & 0x80:
                raise ProtocolViolation("fragmented, masked or extension frame")
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if end - pos < head + length:
                break
            start = pos + head
            frames.append(WsFrame(first & 0x0F, bytes(buf[start : start + length])))
            pos = start + length
        if pos:
            del buf[:pos]
        return frames
