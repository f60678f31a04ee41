"""kurir.server.ws_protocol over real sockets: coalesced writes, read pausing, light state, and
its own parsing of plain binary frames beside ``websockets``' (raw frames from a raw socket)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from kurir.bench.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    WsFrame,
    check_handshake,
    encode_frame,
    handshake_request,
)
from kurir.server.run import bind_socket
from kurir.server.ws_protocol import RECEIVE, DeviceSocketProtocol

_HANG_GUARD_S = 30  # only so that a broken protocol fails the test instead of hanging it


class _CountingTransport:
    """The real transport, with its writes counted."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Recording(DeviceSocketProtocol):
    """The protocol under test, remembering its instances and how often writing paused."""

    instances: ClassVar[list[_Recording]] = []

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.counting = _CountingTransport(self.transport)
        self.transport = self.counting  # type: ignore[assignment]
        self.write_pauses = 0
        _Recording.instances.append(self)

    def pause_writing(self) -> None:
        self.write_pauses += 1
        super().pause_writing()


Endpoint = Callable[[WebSocket, _Recording], Awaitable[None]]


@contextlib.asynccontextmanager
async def _serve(endpoint: Endpoint, *, max_size: int = 16 * 1024 * 1024) -> AsyncIterator[str]:
    async def route(websocket: WebSocket) -> None:
        await websocket.accept()
        await endpoint(websocket, _Recording.instances[-1])

    app = Starlette(routes=[WebSocketRoute("/ws", route)])
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        ws=_Recording,
        ws_max_size=max_size,
        ws_per_message_deflate=False,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Polls protocol state, which has no event to wait on."""
    async with asyncio.timeout(_HANG_GUARD_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_frames_sent_in_one_loop_iteration_leave_in_one_write() -> None:
    writes: list[int] = []

    async def endpoint(websocket: WebSocket, protocol: _Recording) -> None:
        before = protocol.counting.writes
        for i in range(100):
            await websocket.send_bytes(i.to_bytes(2, "big"))
        await asyncio.sleep(0)  # the flush runs on the next iteration
        writes.append(protocol.counting.writes - before)
        await websocket.receive_bytes()

    async with _serve(endpoint) as url, connect(url, compression=None) as ws:
        received = [await ws.recv() for _ in range(100)]
        await ws.send(b"done")
    assert received == [i.to_bytes(2, "big") for i in range(100)]
    assert writes == [1]


async def test_the_handshake_objects_are_dropped_once_accepted() -> None:
    kept: list[object] = []

    async def endpoint(websocket: WebSocket, protocol: _Recording) -> None:
        kept.extend([protocol.request, protocol.response])
        await websocket.send_bytes(b"hello")
        await websocket.receive_bytes()

    async with _serve(endpoint) as url, connect(url, compression=None) as ws:
        assert await ws.recv() == b"hello"
        await ws.send(b"bye")
    assert kept == [None, None]


async def test_reading_pauses_only_when_the_app_falls_behind() -> None:
    paused_at: list[bool] = []
    go = asyncio.Event()

    async def endpoint(websocket: WebSocket, protocol: _Recording) -> None:
        await _until(lambda: protocol.queue.qsize() >= 10)
        paused_at.append(protocol.read_paused)  # 10 unread: still reading
        go.set()
        await _until(lambda: protocol.read_paused)  # the high-water mark pauses it
        paused_at.append(protocol.read_paused)
        got = [await websocket.receive_bytes() for _ in range(200)]
        paused_at.append(protocol.read_paused)  # caught up: reading again
        await websocket.send_bytes(
            b"ok" if got == [i.to_bytes(2, "big") for i in range(200)] else b""
        )

    async with _serve(endpoint) as url, connect(url, compression=None) as ws:
        for i in range(10):
            await ws.send(i.to_bytes(2, "big"))
        async with asyncio.timeout(_HANG_GUARD_S):
            await go.wait()
        for i in range(10, 200):
            await ws.send(i.to_bytes(2, "big"))
        assert await ws.recv() == b"ok"
    assert paused_at == [False, True, False]


async def test_a_slow_reader_gets_every_frame_in_order() -> None:
    frame = 64 * 1024
    count = 200
    pauses: list[int] = []

    async def endpoint(websocket: WebSocket, protocol: _Recording) -> None:
        for i in range(count):
            await websocket.send_bytes(i.to_bytes(4, "big") * (frame // 4))
        pauses.append(protocol.write_pauses)
        await websocket.receive_bytes()

    async with (
        _serve(endpoint) as url,
        connect(url, compression=None, max_size=2 * frame, max_queue=2) as ws,
    ):
        await _until(lambda: bool(_Recording.instances[-1].write_pauses))  # not reading yet
        for i in range(count):
            assert await ws.recv() == i.to_bytes(4, "big") * (frame // 4)
        await ws.send(b"done")
    assert pauses[0] >= 1


async def test_a_sender_waiting_on_a_full_buffer_is_released_when_the_peer_leaves() -> None:
    outcome: list[str] = []

    async def endpoint(websocket: WebSocket, protocol: _Recording) -> None:
        try:
            while True:
                await websocket.send_bytes(b"x" * 65536)
        except WebSocketDisconnect:
            outcome.append("disconnected")

    async with _serve(endpoint) as url:
        ws = await connect(url, compression=None, max_size=1 << 20, max_queue=1)
        await _until(lambda: bool(_Recording.instances[-1].write_pauses))
        ws.transport.abort()
        await _until(lambda: bool(outcome))
    assert outcome == ["disconnected"]


# -- plain binary frames parsed by the protocol itself, everything else by websockets -------


def _binary(payload: bytes) -> bytes:
    return encode_frame(OP_BINARY, payload)


async def _echo(websocket: WebSocket, protocol: _Recording) -> None:
    """Echoes every message back: bytes as bytes, text as ``text:`` + its UTF-8."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"])
        else:
            await websocket.send_bytes(b"text:" + message["text"].encode())


class _RawClient:
    """A WebSocket client on a raw socket: writes whatever bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = FrameParser()
        self.pending: list[WsFrame] = []

    @classmethod
    async def connect(cls, url: str) -> _RawClient:
        host_port = url.removeprefix("ws://").split("/", 1)[0]
        host, port = host_port.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        request, key = handshake_request(host_port, "/ws", {})
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        check_handshake(head[:-4], key)
        return cls(reader, writer)

    async def send_in_pieces(self, data: bytes, sizes: list[int]) -> None:
        """Writes ``data`` in pieces of the given sizes (cycled), each in its own write."""
        pos = 0
        i = 0
        while pos < len(data):
            piece = sizes[i % len(sizes)]
            self.writer.write(data[pos : pos + piece])
            await self.writer.drain()
            await asyncio.sleep(0.001)  # so that the server reads this piece on its own
            pos += piece
            i += 1

    async def frame(self) -> WsFrame:
        async with asyncio.timeout(_HANG_GUARD_S):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed")
                self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    def close(self) -> None:
        self.writer.close()


async def test_plain_frames_of_every_length_form_split_anywhere_arrive_whole() -> None:
    payloads = [b"", b"a", os.urandom(125), os.urandom(126), os.urandom(65535), os.urandom(65536)]
    async with _serve(_echo) as url:
        client = await _RawClient.connect(url)
        try:
            for payload in payloads:
                frame = _binary(payload)
                # every header and mask byte on its own, then the payload in large pieces
                await client.send_in_pieces(frame[:16], [1])
                await client.send_in_pieces(frame[16:], [4096])
            # then all of them back to back in one write
            await client.send_in_pieces(b"".join(_binary(p) for p in payloads), [1 << 20])
            echoed = [await client.frame() for _ in range(2 * len(payloads))]
        finally:
            client.close()
    assert [(f.opcode, f.payload) for f in echoed] == [(OP_BINARY, p) for p in payloads * 2]


async def test_control_frames_and_fragments_between_plain_frames_keep_their_order() -> None:
    stream = b"".join(
        [
            _binary(b"one"),
            encode_frame(OP_PING, b"are you there"),
            _binary(b"two"),
            encode_frame(OP_BINARY, b"thr", fin=False),  # not final: a fragmented message starts
            encode_frame(OP_PING, b"mid-message"),
            encode_frame(0x0, b"ee"),  # the final continuation
            encode_frame(OP_TEXT, "four \u00e9".encode()),
            _binary(b"five"),
        ]
    )
    async with _serve(_echo) as url:
        client = await _RawClient.connect(url)
        try:
            await client.send_in_pieces(stream, [5])
            frames = [await client.frame() for _ in range(7)]
        finally:
            client.close()
    assert [(f.opcode, f.payload) for f in frames if f.opcode == OP_PONG] == [
        (OP_PONG, b"are you there"),
        (OP_PONG, b"mid-message"),
    ]
    assert [f.payload for f in frames if f.opcode == OP_BINARY] == [
        b"one",
        b"two",
        b"three",
        "text:four \u00e9".encode(),
        b"five",
    ]


async def test_a_new_message_inside_a_fragmented_one_is_a_protocol_error() -> None:
    async with _serve(_echo) as url:
        client = await _RawClient.connect(url)
        try:
            begun = encode_frame(OP_BINARY, b"begun", fin=False)
            await client.send_in_pieces(begun + _binary(b"x"), [len(begun)])
            closing = await client.frame()
        finally:
            client.close()
    assert closing.opcode == OP_CLOSE
    assert int.from_bytes(closing.payload[:2], "big") == 1002


async def test_a_frame_over_the_size_limit_is_refused_with_1009() -> None:
    async with _serve(_echo, max_size=1000) as url:
        client = await _RawClient.connect(url)
        try:
            await client.send_in_pieces(_binary(b"fits"), [4096])
            fits = await client.frame()
            await client.send_in_pieces(_binary(os.urandom(1001)), [4096])
            closing = await client.frame()
        finally:
            client.close()
    assert (fits.opcode, fits.payload) == (OP_BINARY, b"fits")
    assert closing.opcode == OP_CLOSE
    assert int.from_bytes(closing.payload[:2], "big") == 1009


async def test_an_unmasked_client_frame_is_a_protocol_error() -> None:
    async with _serve(_echo) as url:
        client = await _RawClient.connect(url)
        try:
            unmasked = struct.pack("!BB", 0x80 | OP_BINARY, 3) + b"abc"
            await client.send_in_pieces(_binary(b"ok"), [4096])
            ok = await client.frame()
            await client.send_in_pieces(unmasked, [4096])
            closing = await client.frame()
        finally:
            client.close()
    assert (ok.opcode, ok.payload) == (OP_BINARY, b"ok")
    assert closing.opcode == OP_CLOSE
    assert int.from_bytes(closing.payload[:2], "big") == 1002


async def test_a_close_frame_after_plain_frames_ends_the_connection_cleanly() -> None:
    async with _serve(_echo) as url:
        client = await _RawClient.connect(url)
        try:
            close = encode_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
            await client.send_in_pieces(_binary(b"last") + close, [3])
            last = await client.frame()
            reply = await client.frame()
        finally:
            client.close()
    assert (last.opcode, last.payload) == (OP_BINARY, b"last")
    assert (reply.opcode, int.from_bytes(reply.payload[:2], "big")) == (OP_CLOSE, 1000)


async def test_the_receive_extension_reads_every_message_then_the_disconnect() -> None:
    """``kurir.receive`` is the protocol's own receive: the same events as Starlette's, each
    message once and in order whether it was queued or waited for, and a reader that waited
    keeps no settled waiter."""
    events: list[dict[str, Any]] = []
    waiters: list[object] = []

    async def endpoint(websocket: WebSocket, protocol: _Recording) -> None:
        receive = websocket.scope["extensions"][RECEIVE]
        await _until(lambda: protocol.queue.qsize() >= 3)  # three queued before any read
        while True:
            message = await receive()
            events.append(message)
            waiters.append(protocol.queue._waiter)  # type: ignore[attr-defined]
            if message["type"] == "websocket.disconnect":
                return
            if message["bytes"] == b"2":
                await websocket.send_bytes(b"waiting")  # the next ones come one at a time

    async with _serve(endpoint) as url, connect(url, compression=None) as ws:
        for i in range(3):
            await ws.send(str(i).encode())
        assert await ws.recv() == b"waiting"
        for i in range(3, 6):
            await ws.send(str(i).encode())
            await asyncio.sleep(0.01)
    received = [e["bytes"] for e in events if e["type"] == "websocket.receive"]
    assert received == [str(i).encode() for i in range(6)]
    assert [e["type"] for e in events[6:]] == ["websocket.disconnect"]
    assert waiters == [None] * 7
