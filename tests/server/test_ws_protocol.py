"""kurir.server.ws_protocol over real sockets: coalesced writes, read pausing, light state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from kurir.server.run import bind_socket
from kurir.server.ws_protocol import DeviceSocketProtocol

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
async def _serve(endpoint: Endpoint) -> AsyncIterator[str]:
    async def route(websocket: WebSocket) -> None:
        await websocket.accept()
        await endpoint(websocket, _Recording.instances[-1])

    app = Starlette(routes=[WebSocketRoute("/ws", route)])
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, ws=_Recording, ws_per_message_deflate=False, lifespan="off", log_config=None
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
