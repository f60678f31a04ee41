"""The device WebSocket's short path through the ASGI stack.

This module owns one ASGI middleware, :class:`DirectWebSocket`, that hands the upgrade of the
device WebSocket path straight to its endpoint, past Starlette's exception middleware, router
and route wrappers. It knows nothing of devices or frames: it only dispatches.

Why: a device's WebSocket lives as long as the device stays connected, and every ASGI layer
the connection passed keeps its coroutine frame (and Starlette's exception wrappers their
closures) alive that long. Those layers cost about 4 KB per idle connected device
(``docs/performance.md``, "Idle connections") and do nothing for this endpoint: it raises no
``HTTPException`` or ``WebSocketException`` for them to turn into a response or close code. An
error it does not handle still propagates to Starlette's ``ServerErrorMiddleware`` and uvicorn,
which close the connection, as before. The ``WebSocketRoute`` stays registered, so the path is
still known to the router (``url_path_for``) and any scope this middleware does not match
(another ``root_path``) still reaches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

__all__ = ["DirectWebSocket"]


class DirectWebSocket:
    """ASGI middleware: a WebSocket scope for exactly ``path`` goes to ``endpoint`` directly."""

    def __init__(
        self, app: ASGIApp, *, path: str, endpoint: Callable[[WebSocket], Awaitable[None]]
    ) -> None:
        self.app = app
        self._path = path
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch ``scope``: the device WebSocket to its endpoint, anything else onwards."""
        if scope["type"] == "websocket" and scope["path"] == self._path:
            await self._endpoint(WebSocket(scope, receive, send))
        else:
            await self.app(scope, receive, send)
