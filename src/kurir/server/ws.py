"""The WebSocket transport: one authenticated connection per device (``GET /v1/ws``).

This module owns moving frames between one device's socket and the services: decoding
client frames (:mod:`kurir.wire.frames`), answering each ``send`` with a ``result`` after the
commit (and each ``group_send``, :mod:`kurir.server.services.groups`), delivering the mailbox
in seq order followed by ``drained``, waking on new mail, and
closing with the protocol's codes (4000 protocol error, 4001 replaced, 4003 auth failed or
credentials revoked by re-registration). The
delivery rules themselves live in :mod:`kurir.server.services.messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from kurir.server.context import client_host, services_of
from kurir.server.errors import MismatchedDevices, Refused, StaleDevices
from kurir.server.services.accounts import AuthedDevice
from kurir.server.services.groups import GroupService
from kurir.server.services.messages import MessageService
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
_INTERNAL_ERROR_CLOSE: Final = 1011
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class DeviceConnection:
    """One live, authenticated device connection.

    Args:
        websocket: The accepted socket.
        device: The authenticated device.
        messages: The message service.
    """

    def __init__(
        self,
        websocket: WebSocket,
        device: AuthedDevice,
        messages: MessageService,
        groups: GroupService | None = None,
    ) -> None:
        self._groups = groups
        self._ws = websocket
        self._device = device
        self._messages = messages
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stop_code: int = CloseCode.REPLACED
        self._send_lock = asyncio.Lock()

    def wake(self) -> None:
        """New envelopes are waiting."""
        self._wake.set()

    def replace(self) -> None:
        """A newer connection of this device took over."""
        self._stop(CloseCode.REPLACED)

    def revoke(self) -> None:
        """The device's credentials were revoked by re-registration of its account."""
        self._stop(CloseCode.AUTH)

    def _stop(self, code: int) -> None:
        if not self._stopped.is_set():
            self._stop_code = code
            self._stopped.set()

    async def _send(self, frame: ServerFrame) -> None:
        data = encode_frame(frame)
        async with self._send_lock:
            await self._ws.send_bytes(data)

    async def run(self) -> int | None:
        """Serve until the peer leaves, violates the protocol, is replaced or revoked.

        Returns:
            The close code to send, or ``None`` when the peer already went away.
        """
        receive = asyncio.create_task(self._receive_loop())
        deliver = asyncio.create_task(self._deliver_loop())
        stopped = asyncio.create_task(self._stopped.wait())
        tasks = {receive, deliver, stopped}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._stopped.is_set():
            return self._stop_code
        for task in done:
            if task is stopped or task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                if isinstance(error, _GONE):
                    return None
                _log.error("connection task failed", exc_info=error)
                return _INTERNAL_ERROR_CLOSE
            if task is receive:
                return receive.result()
        return None

    async def _receive_loop(self) -> int | None:
        while True:
            message = await self._ws.receive()
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
            # Frames are handled strictly in order, so a `result` also confirms every earlier
            # `ack`. Shielded: what was received is applied even if the connection is closed
            # or replaced meanwhile.
            match frame:
                case Send():
                    await self._send(await asyncio.shield(self._handle_send(frame)))
                case Ack(seqs=seqs):
                    await asyncio.shield(self._messages.acknowledge(self._device, seqs))
                case GroupSend():
                    await self._send(await asyncio.shield(self._handle_group_send(frame)))

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

    async def _deliver_loop(self) -> None:
        ref = self._device.ref
        backlog_end = await self._messages.last_seq(ref)
        after = 0
        drained = False
        while True:
            self._wake.clear()
            batch = await self._messages.fetch(ref, after_seq=after, limit=_FETCH_BATCH)
            for env in batch:
                await self._send(
                    Envelope(
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
                )
                after = env.seq
            if not drained and (len(batch) < _FETCH_BATCH or after >= backlog_end):
                expired = await self._messages.take_expired_count(ref)
                await self._send(Drained(expired))
                drained = True
            if len(batch) < _FETCH_BATCH:
                await self._wake.wait()


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Authenticate the upgrade, then serve the device until it leaves or is replaced."""
    services = services_of(websocket)
    await websocket.accept()
    try:
        device = await services.accounts.authenticate(
            websocket.headers.get("authorization"), client_host(websocket)
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
