"""uvicorn's sans-I/O WebSocket protocol, trimmed for many long-lived, busy device sockets.

This module owns how bytes move between a device's TCP connection and the ASGI application.
It keeps uvicorn's ``websockets-sansio`` implementation (handshake, framing, close handshake,
keepalive, the ASGI events) and changes what costs memory or CPU per connection:

- **Writes are coalesced.** A ``websocket.send`` appends its frame to the ``websockets``
  protocol's output buffer, and one ``transport.write`` per event-loop iteration sends what
  every send of that iteration produced (uvicorn writes once per frame: one system call each),
  or at once past :data:`_FLUSH_AT` bytes, so that a full socket still pushes back on the
  sender. Frames keep their order: every path that writes drains that one buffer.
- **Reading pauses only when the application falls behind** (:data:`_READ_HIGH_WATER` unread
  messages), not after every message (uvicorn pauses and resumes reading per frame: two
  ``epoll`` changes per message).
- **The receive queue and the writable flag are plain attributes**, not an ``asyncio.Queue``
  and an ``asyncio.Event`` (each keeps an empty ``deque`` of about 760 bytes per connection).
- **The handshake request and response are dropped** once the connection is accepted (about
  5 KB of header objects that uvicorn keeps for the connection's whole life).
- **Plain binary frames skip the ``websockets`` frame machinery.** Once the connection is
  open, a final, masked binary frame without extension bits (every frame a kurir client
  sends) is parsed and unmasked here (:meth:`DeviceSocketProtocol.data_received`), and an
  outgoing binary message is framed here, instead of through ``websockets``' generator-based
  parser and its ``Frame`` objects. Every other frame (ping, pong, close, text, fragments, a
  frame over the size limit, bad masking), and every byte while a fragmented message is in
  progress or before the handshake completes, goes to ``websockets`` exactly as before, always
  starting at a frame boundary, so its close handshake, errors and limits are unchanged. Our
  outgoing frames go into the same ``websockets`` output buffer as its own, so order is kept.
- **The application may read past Starlette.** The protocol's own ``receive`` is offered as
  the ASGI scope extension :data:`RECEIVE`, and it awaits its waiter future directly: one
  coroutine per message instead of three (Starlette's ``WebSocket.receive``, this
  ``receive``, the queue's ``get``).

It depends on uvicorn's internals (attribute names of ``WebSocketsSansIOProtocol``), so
pyproject.toml pins uvicorn's minor version; tests/server/test_ws_protocol.py exercises each
change over real sockets.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any, Final

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import OPEN
from websockets.speedups import apply_mask

__all__ = ["RECEIVE", "SEND_NOW", "DeviceSocketProtocol"]

SEND_NOW: Final = "kurir.send_now"
"""ASGI scope extension: a callable ``(data: bytes) -> bool`` that sends a binary message at
once if it can (:meth:`DeviceSocketProtocol.send_now`)."""
RECEIVE: Final = "kurir.receive"
"""ASGI scope extension: the protocol's own ASGI ``receive``, for an application that has
accepted the socket to read frames past Starlette's ``WebSocket.receive`` (its state checks
and one coroutine per message); it yields ``websocket.receive`` events, then one
``websocket.disconnect``."""
_READ_HIGH_WATER: Final = 64
"""Unread messages after which reading from the socket pauses until the app catches up."""
_FLUSH_AT: Final = 64 * 1024
"""Bytes of frames after which a send writes at once (so the transport can push back)."""
_PLAIN_BINARY: Final = 0x82
"""First byte of a final binary frame without extension bits (RFC 6455 §5.2)."""
_MASKED: Final = 0x80
_HEAD16: Final = struct.Struct("!BBH")
_HEAD64: Final = struct.Struct("!BBQ")


class _Inbox:
    """The ASGI receive queue: a list while short (56 bytes empty), one waiter at most.

    Its waiters come from the protocol's own loop: ``asyncio.get_running_loop()`` costs a
    ``getpid`` system call on every call (CPython 3.11 checks for a fork), and an idle
    connection waits once per message it receives. A settled waiter is dropped at once, so
    an idle connection keeps none.
    """

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[Any] | None = None
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def qsize(self) -> int:
        return 0 if self._items is None else len(self._items)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> Any | None:
        """The next item, or ``None`` when there is none (items are never ``None``)."""
        items = self._items
        if not items:
            return None
        item = items.popleft()
        if not items:
            self._items = None  # an idle connection keeps no deque
        return item

    def wait(self) -> asyncio.Future[None]:
        """A future settled by the next :meth:`put_nowait` (awaited directly: no coroutine
        of its own per message)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = self._loop.create_future()
        return waiter


class DeviceSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with coalesced writes and lighter state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox(self.loop)  # type: ignore[assignment]
        self._flush_scheduled = False
        self._pending = 0
        self._write_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._rx: bytearray | None = None  # the start of a frame not yet whole
        self.writable = _ALWAYS_SET  # type: ignore[assignment]  # pausing: _write_paused
        self.app = self._run_app_then_flush

    async def _run_app_then_flush(self, scope: Any, receive: Any, send: Any) -> None:
        """The application, then what it sent last: uvicorn closes the transport as soon as
        the application returns, before a flush scheduled for the next iteration would run."""
        try:
            await self.config.loaded_app(scope, receive, send)
        finally:
            if self._flush_scheduled:
                self._flush()

    # -- writing ----------------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._flush_scheduled:
            return  # flushed already
        self._flush_scheduled = False
        self._pending = 0
        output = self.conn.data_to_send()
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.resume_writing()  # release a sender blocked on a buffer that will never drain

    async def send(self, message: Any) -> None:
        while self._write_paused and not self.disconnected:
            self._write_waiter = self.loop.create_future()
            try:
                await self._write_waiter
            finally:
                self._write_waiter = None
        if self.disconnected:
            raise ClientDisconnected()
        data = message.get("bytes") if message["type"] == "websocket.send" else None
        if (
            data is not None
            and self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
        ):
            if self.conn.state is not OPEN:
                raise ClientDisconnected()
            self._frame(data)
            return
        await super().send(message)
        if self.handshake_complete:
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def send_now(self, data: bytes) -> bool:
        """Send ``data`` as one binary message without waiting, if it can go at once; False
        (nothing sent) while writing is paused or the connection is not open: then send it
        with ``websocket.send``, which waits. Offered to the application as the ASGI scope
        extension :data:`SEND_NOW` (it saves the application a task per message)."""
        if (
            self._write_paused
            or self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or self.conn.state is not OPEN
        ):
            return False
        self._frame(data)
        return True

    def _frame(self, data: bytes) -> None:
        """Append one final binary frame of ``data`` to the output; flush on the next
        iteration, or now past :data:`_FLUSH_AT` bytes."""
        writes = self.conn.writes
        n = len(data)
        if n < 126:
            writes.append(bytes((_PLAIN_BINARY, n)))
        elif n < 65536:
            writes.append(_HEAD16.pack(_PLAIN_BINARY, 126, n))
        else:
            writes.append(_HEAD64.pack(_PLAIN_BINARY, 127, n))
        writes.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        self._pending += n
        if self._pending >= _FLUSH_AT:
            self._flush()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # an upgrade the application will see
            extensions = scope["extensions"]
            extensions[SEND_NOW] = self.send_now
            extensions[RECEIVE] = self.receive

    # -- reading ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._rx is None and not self._at_frame_boundary():
            super().data_received(data)  # the handshake, a fragmented message, or closing
            return
        rx: bytes | bytearray = data
        if self._rx is not None:  # the rest of a frame whose start came before
            rx = self._rx
            rx += data
            self._rx = None
        pos = 0
        end = len(rx)
        limit = self.conn.max_message_size
        while end - pos >= 2:
            second = rx[pos + 1]
            length = second & 0x7F
            if rx[pos] != _PLAIN_BINARY or not second & _MASKED:
                break  # not a plain binary frame: websockets takes it from here
            head = 6  # two bytes, then the 4-byte mask
            if length == 126:
                if end - pos < 4:
                    self._rx = bytearray(rx[pos:])
                    return
                length = int.from_bytes(rx[pos + 2 : pos + 4], "big")
                head = 8
            elif length == 127:
                if end - pos < 10:
                    self._rx = bytearray(rx[pos:])
                    return
                length = int.from_bytes(rx[pos + 2 : pos + 10], "big")
                head = 14
            if limit is not None and length > limit:
                break  # websockets refuses it with 1009
            start = pos + head
            if end - start < length:
                self._rx = bytearray(rx[pos:])  # wait for the rest of this frame
                return
            payload = apply_mask(rx[start : start + length], rx[start - 4 : start])
            pos = start + length
            self._to_app(payload)
            if self.transport.is_closing():
                return
        if pos == end:
            return
        if end - pos < 2:
            self._rx = bytearray(rx[pos:])  # not even a frame head yet
            return
        super().data_received(rx if pos == 0 and isinstance(rx, bytes) else bytes(rx[pos:]))

    def _at_frame_boundary(self) -> bool:
        """Whether the next byte starts a frame that this class may parse itself: the
        connection is open, ``websockets`` holds no unparsed bytes and no fragmented message
        is in progress."""
        conn = self.conn
        return (
            self.handshake_complete
            and conn.state is OPEN
            and conn.current_size is None
            and not conn.reader.buffer
        )

    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.curr_msg_data_type == "text":
            try:
                self._to_app(data.decode())
            except UnicodeDecodeError:
                self.conn.send_close(1007)
                self.handle_parser_exception()
        else:
            self._to_app(data)

    def _to_app(self, data: bytes | str) -> None:
        if self.close_sent:
            return  # past `websocket.close`: discard, as uvicorn does
        if isinstance(data, bytes):
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "text": data})
        if not self.read_paused and self.queue.qsize() >= _READ_HIGH_WATER:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        queue: _Inbox = self.queue  # type: ignore[assignment]
        message = queue.get_nowait()
        while message is None:
            await queue.wait()
            message = queue.get_nowait()
        if self.read_paused and queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message


class _AlwaysSet:
    """Stands in for the base class's ``writable`` Event, which its ``send`` awaits: this
    subclass waits for the transport in its own ``send`` before."""

    __slots__ = ()

    async def wait(self) -> bool:
        return True

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass


_ALWAYS_SET: Final = _AlwaysSet()
