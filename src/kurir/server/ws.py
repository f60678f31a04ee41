"""The WebSocket transport: one authenticated connection per device (``GET /v1/ws``).

This module owns moving frames between one device's socket and the services: decoding
client frames (:mod:`kurir.wire.frames`), answering each ``send`` with a ``result`` after the
commit (and each ``group_send``, :mod:`kurir.server.services.groups`), applying ``ack``s in
batches without holding up the frames behind them, delivering the mailbox in seq order
followed by ``drained``, then sending newly committed envelopes as the connection registry
hands them over (reading the mailbox only when they do not follow what was sent), and
closing with the protocol's codes (4000 protocol error, 4001 replaced, 4003 auth failed or
credentials revoked by re-registration). The delivery rules themselves live in
:mod:`kurir.server.services.messages`.

An idle connection costs one task: the ASGI handler's own, reading frames (through the
protocol's own ``receive``, :data:`kurir.server.ws_protocol.RECEIVE`, when offered). Applying
acks, and sending envelopes when the socket cannot take them at once (or the mailbox must be
read), run in short-lived tasks that exist only while they have work; committed envelopes
that follow the last one sent go out at once, without a task, when the server's WebSocket
protocol offers that (:data:`kurir.server.ws_protocol.SEND_NOW`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from kurir.server.context import client_host, services_of
from kurir.server.errors import MismatchedDevices, Refused, StaleDevices
from kurir.server.services.accounts import AuthedDevice
from kurir.server.services.groups import GroupService
from kurir.server.services.messages import MessageService
from kurir.server.storage.records import StoredEnvelope
from kurir.server.ws_protocol import RECEIVE, SEND_NOW
from kurir.wire.errors import ErrorCode, FrameError
from kurir.wire.frames import (
    Ack,
    CloseCode,
    Drained,
    Envelope,
    ErrorFrame,
    GroupSend,
    Result,
    ResultError,
    Send,
    ServerFrame,
    decode_client_frame,
    encode_frame,
)

__all__ = ["DeviceConnection", "websocket_endpoint"]

_log = logging.getLogger("kurir.server.ws")
_FETCH_BATCH: Final = 100
_OUTBOX_MAX: Final = 256
"""Most handed-over envelopes a connection holds unsent; beyond that it reads the mailbox."""
_INTERNAL_ERROR_CLOSE: Final = 1011
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class DeviceConnection:
    """One live, authenticated device connection.

    Delivery keeps a high-water mark, the highest seq sent on this connection. Envelopes
    handed over by the registry (:meth:`deliver`) are sent as they are when the backlog was
    drained and they follow the mark without a gap; otherwise, and when more than
    ``_OUTBOX_MAX`` wait, the connection reads its mailbox after the mark instead (as after
    :meth:`wake`). Either way each envelope goes out once per connection, in seq order.

    Args:
        websocket: The accepted socket.
        device: The authenticated device.
        messages: The message service.
        groups: The group service, if the server has groups.
    """

    __slots__ = (
        "_acked",
        "_acker",
        "_acks",
        "_device",
        "_drained",
        "_flusher",
        "_groups",
        "_handling",
        "_high",
        "_loop",
        "_messages",
        "_now",
        "_outbox",
        "_refetch",
        "_stop_code",
        "_task",
        "_ws",
    )

    def __init__(
        self,
        websocket: WebSocket,
        device: AuthedDevice,
        messages: MessageService,
        groups: GroupService | None = None,
    ) -> None:
        self._groups = groups
        self._ws = websocket
        # sends a frame at once when the socket can take it (our uvicorn protocol offers it)
        self._now: Callable[[bytes], bool] | None = websocket.scope.get("extensions", {}).get(
            SEND_NOW
        )
        # kept: ``asyncio.get_running_loop()`` (and ``asyncio.create_task``, which calls it)
        # costs a ``getpid`` system call on CPython 3.11, and acks make a future and a task
        self._loop = asyncio.get_running_loop()
        self._device = device
        self._messages = messages
        self._task: asyncio.Task[object] | None = None
        self._stop_code: int | None = None
        self._handling = False  # a send is being applied: it is not interrupted
        self._high = 0  # the highest seq sent on this connection
        self._drained = False
        self._refetch = True  # the mailbox must be read after ``_high``
        self._outbox: deque[StoredEnvelope] | None = None  # made when first needed
        self._flusher: asyncio.Task[None] | None = None
        self._acks: list[int] = []
        self._acked: asyncio.Future[None] | None = None  # settles once the last ack applied
        self._acker: asyncio.Task[None] | None = None

    @property
    def device(self) -> AuthedDevice:
        """The device this connection authenticated as (for re-checks of its credentials)."""
        return self._device

    def wake(self) -> None:
        """New envelopes are waiting in the mailbox."""
        self._refetch = True
        self._kick()

    def deliver(self, envelopes: Sequence[StoredEnvelope]) -> None:
        """``envelopes`` (in seq order) were just committed to this device's mailbox."""
        outbox = self._outbox
        if not self._drained or self._refetch:
            self._refetch = True  # the pending mailbox read finds them
        elif outbox is None and self._flusher is None:
            rest = self._send_at_once(envelopes)
            if not rest:
                return  # all sent, nothing for a flusher to do
            self._outbox = deque(rest)
        elif outbox is None:
            self._outbox = deque(envelopes)
        elif len(outbox) + len(envelopes) > _OUTBOX_MAX:
            outbox.clear()
            self._refetch = True
        else:
            outbox.extend(envelopes)
        self._kick()

    def _send_at_once(self, envelopes: Sequence[StoredEnvelope]) -> Sequence[StoredEnvelope]:
        """With nothing else being sent: send the envelopes that follow the mark right away,
        without a task, while the socket takes them; return the ones left for the flusher
        (from a gap, a paused socket or a frame that could not be encoded on)."""
        now = self._now
        if now is None or self._stop_code is not None:
            return envelopes
        sent = 0
        for i, env in enumerate(envelopes):
            if env.seq <= self._high:
                continue  # already read from the mailbox
            try:
                if env.seq != self._high + 1 or not now(encode_frame(_frame(env))):
                    return envelopes[i:]
            except FrameError:
                return envelopes[i:]  # the flusher meets the same error and closes
            self._high = env.seq
            sent += 1
        if sent:
            self._messages.handed_off(sent)
        return ()

    def replace(self) -> None:
        """A newer connection of this device took over."""
        self._stop(CloseCode.REPLACED)

    def revoke(self) -> None:
        """The device's credentials were revoked by re-registration of its account."""
        self._stop(CloseCode.AUTH)

    def _stop(self, code: int) -> None:
        if self._stop_code is None:
            self._stop_code = code
            task = self._task
            if task is not None and task is not asyncio.current_task() and not self._handling:
                task.cancel()  # interrupts the reading; ``run`` returns the code
            # while a send is applied the reading task returns the code once it is done

    def _kick(self) -> None:
        if self._flusher is None and self._stop_code is None:
            self._flusher = self._loop.create_task(self._flush())

    async def _send(self, frame: ServerFrame) -> None:
        # a frame is written whole (no await between framing and the transport write), so
        # the reading task's results and the flusher's envelopes never interleave
        data = encode_frame(frame)
        now = self._now
        if now is None or not now(data):
            await self._ws.send_bytes(data)

    async def run(self) -> int | None:
        """Serve until the peer leaves, violates the protocol, is replaced or revoked.

        Returns:
            The close code to send, or ``None`` when the peer already went away.
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("DeviceConnection.run must run inside a task")
        self._task = task
        if self._stop_code is not None:
            return self._stop_code
        self._kick()  # the backlog
        try:
            return await self._receive_loop()
        except asyncio.CancelledError:
            if self._stop_code is None:
                raise  # cancelled from outside: the server is stopping
            task.uncancel()
            return self._stop_code
        except _GONE:
            return self._stop_code
        except Exception:
            _log.exception("connection failed")
            return _INTERNAL_ERROR_CLOSE
        finally:
            if self._stop_code is None:
                self._stop_code = _INTERNAL_ERROR_CLOSE  # no new flusher from now on
            flusher = self._flusher
            if flusher is not None:
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
            acker = self._acker
            if acker is not None:  # what was received is applied, even after a close
                await asyncio.gather(asyncio.shield(acker), return_exceptions=True)

    async def _receive_loop(self) -> int | None:
        # the socket is accepted: read past Starlette's per-message checks when the server's
        # protocol offers its own ``receive`` (the same events, one coroutine less per frame)
        receive: Callable[[], Awaitable[Message]] = (
            self._ws.scope.get("extensions", {}).get(RECEIVE) or self._ws.receive
        )
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("bytes")
            if data is None:
                await self._send(ErrorFrame(ErrorCode.MALFORMED_FRAME, "frames must be binary"))
                return CloseCode.PROTOCOL_ERROR
            try:
                frame = decode_client_frame(data)
            except FrameError as exc:
                if exc.request_id is not None:
                    error = ResultError(exc.code.value, exc.message)
                    await self._send(Result(exc.request_id, False, error))
                    continue
                await self._send(ErrorFrame(exc.code.value, exc.message))
                return CloseCode.PROTOCOL_ERROR
            # Sends are handled strictly in order, and never interrupted by a replacement or
            # revocation (:meth:`_stop` waits for them): what was received is applied. Acks are
            # applied in batches beside the reading (:meth:`_apply_acks`), usually in the same
            # group commit as the send behind them; a ``result`` still waits for every earlier
            # ack, so it confirms them (docs/protocol.md §Delivery).
            match frame:
                case Send():
                    acked = self._acked
                    self._handling = True
                    try:
                        result = await self._handle_send(frame)
                    finally:
                        self._handling = False
                    if self._stop_code is not None:
                        return self._stop_code
                    if acked is not None:
                        await asyncio.shield(acked)
                    await self._send(result)
                case Ack(seqs=seqs):
                    if not seqs:
                        continue
                    if not self._acks:
                        self._acked = self._loop.create_future()
                    self._acks.extend(seqs)
                    if self._acker is None:
                        self._acker = self._loop.create_task(self._apply_acks())
                case GroupSend():
                    acked = self._acked
                    self._handling = True
                    try:
                        result = await self._handle_group_send(frame)
                    finally:
                        self._handling = False
                    if self._stop_code is not None:
                        return self._stop_code
                    if acked is not None:
                        await asyncio.shield(acked)
                    await self._send(result)

    async def _apply_acks(self) -> None:
        """Apply every ack received so far in one store call, until none is left: the acks
        that arrive while one batch commits form the next."""
        try:
            while self._acks:
                seqs, self._acks = self._acks, []
                done = self._acked
                try:
                    await self._messages.acknowledge(self._device, seqs)
                except Exception:
                    # not applied: the envelopes stay queued and come again after a reconnect
                    _log.exception("internal error while applying acks")
                finally:
                    if done is not None and not done.done():
                        done.set_result(None)
                    if self._acked is done:
                        self._acked = None  # nothing pending: keep no future while idle
        finally:
            self._acker = None

    async def _handle_group_send(self, frame: GroupSend) -> Result:
        try:
            if self._groups is None:
                raise Refused(ErrorCode.NOT_A_MEMBER, "groups are not available on this server")
            await self._groups.send(self._device, frame)
        except Refused as exc:
            return Result(frame.id, False, ResultError(exc.code.value, exc.message))
        except Exception:
            _log.exception("internal error while accepting a group send")
            error = ResultError(ErrorCode.INTERNAL.value, "internal server error")
            return Result(frame.id, False, error)
        return Result(frame.id, True)

    async def _handle_send(self, frame: Send) -> Result:
        try:
            await self._messages.send(self._device, frame)
        except MismatchedDevices as exc:
            error = ResultError(exc.code.value, exc.message, missing=exc.missing, extra=exc.extra)
            return Result(frame.id, False, error)
        except StaleDevices as exc:
            return Result(
                frame.id, False, ResultError(exc.code.value, exc.message, stale=exc.stale)
            )
        except Refused as exc:
            return Result(frame.id, False, ResultError(exc.code.value, exc.message))
        except Exception:
            _log.exception("internal error while accepting a send")
            error = ResultError(ErrorCode.INTERNAL.value, "internal server error")
            return Result(frame.id, False, error)
        return Result(frame.id, True)

    async def _flush(self) -> None:
        """Send what is due, in seq order: handed-over envelopes that follow the mark, else
        what the mailbox holds after it; ``drained`` once the backlog is out. Ends when idle."""
        ref = self._device.ref
        try:
            while True:
                outbox = self._outbox
                if outbox:
                    env = outbox.popleft()
                    if env.seq <= self._high:
                        continue  # already read from the mailbox
                    if env.seq != self._high + 1:  # a gap: the mailbox has what is missing
                        outbox.clear()
                        self._refetch = True
                        continue
                    await self._send(_frame(env))
                    self._high = env.seq
                    self._messages.handed_off(1)
                elif self._refetch:
                    self._refetch = False
                    batch = await self._messages.fetch(
                        ref, after_seq=self._high, limit=_FETCH_BATCH
                    )
                    for env in batch:
                        if env.seq > self._high:
                            await self._send(_frame(env))
                            self._high = env.seq
                    if len(batch) >= _FETCH_BATCH:
                        self._refetch = True
                    elif not self._drained:
                        expired = await self._messages.take_expired_count(ref)
                        await self._send(Drained(expired))
                        self._drained = True
                else:
                    return
        except _GONE:
            return  # the reading task sees the disconnect
        except Exception:
            _log.exception("delivery failed")
            self._stop(_INTERNAL_ERROR_CLOSE)
        finally:
            self._flusher = None
            self._outbox = None  # an idle connection keeps no buffer


def _frame(env: StoredEnvelope) -> Envelope:
    return Envelope(
        seq=env.seq,
        type=env.type,
        source=env.source,
        source_device=env.source_device,
        source_address=env.source_address,
        message_id=env.message_id,
        timestamp=env.timestamp,
        server_timestamp=env.server_timestamp,
        body=env.body,
    )


def _take_authorization(websocket: WebSocket) -> str | None:
    """The ``Authorization`` header of the upgrade request; the request's headers are then
    dropped from the scope: nothing reads them again, and a connection lives long (about
    1 KB less per connected device)."""
    scope = websocket.scope
    value = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    scope["headers"] = []
    return None if value is None else value.decode("latin-1")


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Authenticate the upgrade, then serve the device until it leaves or is replaced."""
    services = services_of(websocket)
    await websocket.accept()
    try:
        device = await services.accounts.authenticate(
            _take_authorization(websocket), client_host(websocket)
        )
    except Refused as exc:
        await websocket.send_bytes(encode_frame(ErrorFrame(exc.code.value, exc.message)))
        await websocket.close(CloseCode.AUTH)
        return
    connection = DeviceConnection(websocket, device, services.messages, services.groups)
    services.connections.attach(device.ref, connection)
    try:
        code = await connection.run()
    finally:
        services.connections.detach(device.ref, connection)
    if code is not None:
        with contextlib.suppress(*_GONE):
            await websocket.close(code)
