"""The WebSocket transport's set-up over real sockets: no compression, the direct ASGI path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from kurir.server.asgi_ws import DirectWebSocket
from kurir.server.run import bind_socket, make_server
from kurir.server.testing import start_server


async def test_device_websocket_negotiates_no_compression(tmp_path: Path) -> None:
    # the websockets client offers permessage-deflate unless told not to
    async with start_server(tmp_path) as server, connect(server.ws_url) as ws:
        assert ws.request is not None
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []


def _sender(reply: bytes) -> WebSocketRoute:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_bytes(reply)
        await websocket.close()

    return WebSocketRoute(f"/{reply.decode()}", endpoint)


async def _direct(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_bytes(b"direct:" + websocket.url.path.encode())
    await websocket.close()


async def _failing(websocket: WebSocket) -> None:
    await websocket.accept()
    raise RuntimeError("endpoint bug")


@contextlib.asynccontextmanager
async def _serve(app: Starlette) -> AsyncIterator[str]:
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    server = make_server(app, host="127.0.0.1", port=port)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"ws://127.0.0.1:{port}"  # the socket listens already: connections wait for it
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def test_direct_websocket_takes_its_path_and_leaves_others_to_the_router() -> None:
    app = Starlette(
        routes=[_sender(b"routed"), _sender(b"other")],
        middleware=[Middleware(DirectWebSocket, path="/routed", endpoint=_direct)],
    )
    async with _serve(app) as base:
        async with connect(f"{base}/routed") as ws:
            assert await ws.recv() == b"direct:/routed"
        async with connect(f"{base}/other") as ws:
            assert await ws.recv() == b"other"


async def test_an_endpoint_error_ends_the_connection_as_through_the_router() -> None:
    app = Starlette(
        routes=[WebSocketRoute("/routed", _failing)],
        middleware=[Middleware(DirectWebSocket, path="/direct", endpoint=_failing)],
    )
    codes = []
    async with _serve(app) as base:
        for path in ("/routed", "/direct"):
            async with connect(f"{base}{path}") as ws:
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                codes.append(ws.close_code)
    assert codes[0] == codes[1]
    assert codes[0] is not None
    assert codes[0] != 1000  # not a normal closure
