"""Running the application under uvicorn, started programmatically.

This module owns the uvicorn settings kurir relies on: the sans-I/O ``websockets``
implementation (trimmed: :mod:`kurir.server.ws_protocol`), a frame size just above the
protocol limit (so oversized frames get the protocol's ``frame_too_large`` error), no WebSocket
compression (frames carry ciphertext, which does not compress, and a negotiated
permessage-deflate costs about 30 KiB of zlib state per connection), no access log (paths carry
account ids), and serving on a socket the caller may have bound already (port 0 in tests).
"""

from __future__ import annotations

import logging
import socket
from typing import Final

import uvicorn
from starlette.applications import Starlette

from kurir.server.ws_protocol import DeviceSocketProtocol
from kurir.wire.limits import MAX_FRAME_BYTES

__all__ = ["bind_socket", "make_server"]

_WS_MAX_SIZE: Final = MAX_FRAME_BYTES + 64 * 1024


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (0 picks a free port); the caller owns the socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(app: Starlette, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` (start it with ``await server.serve(sockets=[...])``).

    Also silences uvicorn's loggers below WARNING process-wide: its access lines carry paths
    with account ids and its connection lines carry client addresses.
    """
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=DeviceSocketProtocol,
        ws_max_size=_WS_MAX_SIZE,
        ws_per_message_deflate=False,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)
