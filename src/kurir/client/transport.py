"""The client's network I/O: the HTTP API and the messaging WebSocket (docs/protocol.md).

Owns: `HttpApi` (one method per HTTP route, JSON bodies from `kurir.wire.api`, server errors
turned into `ServerError`) and `MessageChannel` (one authenticated WebSocket per device, frames
from `kurir.wire.frames`, reconnection with backoff, `send` requests matched to their `result`).
It only moves data: it never decrypts, never decides what a message means, and never writes
to the local store.

Retrying a `send` on a new connection is safe because the server enqueues idempotently on
(recipient device, message id) (docs/protocol.md §WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar
from uuid import UUID

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from kurir.client.errors import ServerError, TransportError
from kurir.wire import api
from kurir.wire.auth import encode_basic_auth
from kurir.wire.errors import FrameError
from kurir.wire.frames import (
    Ack,
    CloseCode,
    DeviceMessage,
    Drained,
    Envelope,
    ErrorFrame,
    GroupSend,
    Result,
    Send,
    decode_server_frame,
    encode_frame,
)
from kurir.wire.limits import MAX_ACK_SEQS, MAX_FRAME_BYTES

__all__ = ["DeviceAuth", "HttpApi", "MessageChannel", "SendFailedError", "ws_url"]

_log = logging.getLogger(__name__)
_ws_log = logging.getLogger(__name__ + ".websocket")
# websockets logs the handshake headers, the Authorization header included, at DEBUG: this
# logger is pinned at INFO so that no application log level can make it write a credential.
_ws_log.setLevel(logging.INFO)

APP_KEY_HEADER: Final = "X-Kurir-App-Key"
DEFAULT_TIMEOUT: Final = 15.0
"""Seconds to wait for one HTTP answer or one `send` result."""

T = TypeVar("T")


class DeviceAuth:
    """The credentials of this device, turned into the ``Authorization`` header value.

    The password is kept private to this object and never appears in its repr.
    """

    __slots__ = ("_header", "account_id", "device_id")

    def __init__(self, account_id: UUID, device_id: int, password: str) -> None:
        self.account_id = account_id
        self.device_id = device_id
        self._header = encode_basic_auth(account_id, device_id, password)

    @property
    def header(self) -> str:
        """The ``Authorization`` header value (``Basic ...``)."""
        return self._header

    def __repr__(self) -> str:
        return f"DeviceAuth({self.account_id}.{self.device_id})"


def ws_url(server_url: str) -> str:
    """Turns the server's base URL (``http(s)://host:port``) into the WebSocket URL."""
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/v1/ws"
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + "/v1/ws"
    raise TransportError(f"server URL must start with http:// or https://: {server_url}")


class HttpApi:
    """The server's HTTP API (docs/protocol.md §HTTP), one method per route.

    Args:
        server_url: base URL, e.g. ``http://127.0.0.1:8080``.
        auth: this device's credentials; None before registration.
        timeout: seconds per request.
        transport: an httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        server_url: str,
        auth: DeviceAuth | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not server_url.startswith(("http://", "https://")):
            raise TransportError(f"server URL must start with http:// or https://: {server_url}")
        self._server_url = server_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._server_url, timeout=timeout, transport=transport
        )
        self.auth = auth

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()

    async def apps(self) -> api.AppList:
        """``GET /v1/apps``: the app catalogue (ids, identifier kinds)."""
        return await self._call("GET", "/v1/apps", api.AppList, authenticated=False)

    async def request_verification(self, address: str, app_key: str) -> None:
        """``POST /v1/verification``: asks the server's verifier to send a code."""
        await self._call(
            "POST",
            "/v1/verification",
            None,
            body=api.VerificationRequest(address=address),
            headers={APP_KEY_HEADER: app_key},
            authenticated=False,
        )

    async def register(
        self, request: api.RegistrationRequest, app_key: str
    ) -> api.RegistrationResponse:
        """``POST /v1/accounts``: creates (or re-registers) the account and device 1."""
        return await self._call(
            "POST",
            "/v1/accounts",
            api.RegistrationResponse,
            body=request,
            headers={APP_KEY_HEADER: app_key},
            authenticated=False,
        )

    async def put_keys(self, upload: api.KeyUpload) -> None:
        """``PUT /v1/keys``: uploads this device's identity key and prekeys."""
        await self._call("PUT", "/v1/keys", None, body=upload)

    async def key_counts(self) -> api.KeyCounts:
        """``GET /v1/keys/count``: how many one-time prekeys the server still holds."""
        return await self._call("GET", "/v1/keys/count", api.KeyCounts)

    async def prekey_bundle(self, account_id: UUID, device_id: int | None) -> api.PreKeyBundle:
        """``GET /v1/keys/{account}/{device|*}``: takes one-time prekeys of a peer's devices."""
        device = "*" if device_id is None else str(device_id)
        return await self._call("GET", f"/v1/keys/{account_id}/{device}", api.PreKeyBundle)

    async def directory(self, addresses: list[str]) -> api.DirectoryResponse:
        """``POST /v1/directory``: resolves addresses to accounts and device ids."""
        return await self._call(
            "POST",
            "/v1/directory",
            api.DirectoryResponse,
            body=api.DirectoryRequest(addresses=addresses),
        )

    async def devices(self) -> api.DeviceList:
        """``GET /v1/devices``: this account's own devices."""
        return await self._call("GET", "/v1/devices", api.DeviceList)

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T] | None,
        *,
        body: msgspec.Struct | None = None,
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> T:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if authenticated:
            if self.auth is None:
                raise TransportError("this request needs a registered device")
            all_headers["Authorization"] = self.auth.header
        content = api.encode_json(body) if body is not None else None
        try:
            response = await self._http.request(method, path, content=content, headers=all_headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach the server at {self._server_url}: {exc}") from None
        if response.status_code >= 400:
            raise _server_error(response)
        if answer is None:
            return None  # type: ignore[return-value]  # callers with answer=None ignore it
        try:
            return msgspec.json.decode(response.content, type=answer)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise TransportError(f"unexpected answer from the server on {path}") from None


def _server_error(response: httpx.Response) -> ServerError:
    try:
        detail = msgspec.json.decode(response.content, type=api.ErrorBody).error
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ServerError(
            "http_error", f"HTTP {response.status_code}", status=response.status_code
        )
    return ServerError(detail.code, detail.message, status=response.status_code)


class SendFailedError(ServerError):
    """The server refused a `send`; ``missing``, ``extra`` and ``stale`` list device ids."""

    def __init__(self, result: Result) -> None:
        error = result.error
        code = error.code if error is not None else "unknown"
        super().__init__(code, error.message if error is not None else "send failed")
        self.missing = list(error.missing or []) if error is not None else []
        self.extra = list(error.extra or []) if error is not None else []
        self.stale = list(error.stale or []) if error is not None else []


IncomingHandler = Callable[[Envelope | Drained], Awaitable[None]]
"""Called by the channel, in order, for every envelope and drained signal."""


class MessageChannel:
    """This device's WebSocket, kept open with reconnects, carrying sends, acks and envelopes.

    Incoming envelopes are passed to ``on_incoming`` one at a time, in the server's order; the
    handler should store the message durably and then call `ack`. The channel reconnects after
    a dropped connection (the server then redelivers what was not acknowledged) until `close`
    is called, or until the server refuses the credentials (4003) or another connection of this
    device replaces this one (4001); `closed_reason` then says why.

    Args:
        server_url: base URL of the server.
        auth: this device's credentials.
        on_incoming: the handler of envelopes and ``drained`` signals.
        timeout: seconds to wait for a `send` result before retrying.
        max_backoff: longest pause between reconnection attempts, in seconds.
        send_deadline: seconds after which a `send` gives up (across reconnections).
    """

    def __init__(
        self,
        server_url: str,
        auth: DeviceAuth,
        on_incoming: IncomingHandler,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_backoff: float = 5.0,
        send_deadline: float = 60.0,
    ) -> None:
        self._url = ws_url(server_url)
        self._send_deadline = send_deadline
        self._auth = auth
        self._on_incoming = on_incoming
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self._connection: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._incoming: asyncio.Queue[Envelope | Drained] = asyncio.Queue()
        self.closed_reason: str | None = None
        self.connections = 0
        """How many connections were opened so far (1 + reconnects)."""

    async def start(self) -> None:
        """Connects (raising `TransportError` if the first attempt fails) and starts reading."""
        connection = await self._open()
        self._runner = asyncio.create_task(self._run(connection), name="kurir-channel")
        self._dispatcher = asyncio.create_task(self._dispatch(), name="kurir-dispatch")

    async def close(self) -> None:
        """Closes the connection and stops reconnecting."""
        self._stopped.set()
        if self._connection is not None:
            await self._connection.close()
        for task in (self._runner, self._dispatcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_pending(TransportError("the connection was closed"))

    async def drop(self) -> None:
        """Aborts the current connection without a close handshake (the channel reconnects).

        Meant for tests and for applications that detect a dead network themselves.
        """
        if self._connection is not None:
            self._connection.transport.abort()

    async def send(
        self, to: UUID, message_id: bytes, timestamp: int, messages: list[DeviceMessage]
    ) -> None:
        """Sends one message to every listed device of ``to`` and waits for the server's result.

        A send whose connection drops is sent again on the next connection (the same message
        id, so the server queues it at most once), for up to ``send_deadline`` seconds.

        Raises:
            SendFailedError: the server refused (``mismatched_devices``, ``stale_devices``, ...).
            TransportError: the channel is closed for good, or the server did not confirm in
                time (then the message may or may not be queued: send again with the same id).
        """
        try:
            async with asyncio.timeout(self._send_deadline):
                result = await self._send_until_answered(to, message_id, timestamp, messages)
        except TimeoutError:
            raise TransportError(
                "the server did not confirm the message in time; it may or may not be queued"
            ) from None
        if not result.ok:
            raise SendFailedError(result)

    async def _send_until_answered(
        self, to: UUID, message_id: bytes, timestamp: int, messages: list[DeviceMessage]
    ) -> Result:
        while True:
            connection = await self._wait_connected()
            request_id = next(self._ids)
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            frame = Send(
                id=request_id,
                to=to,
                message_id=message_id,
                timestamp=timestamp,
                messages=messages,
            )
            try:
                await connection.send(encode_frame(frame))
                return await asyncio.wait_for(future, self._timeout)
            except (ConnectionClosed, TimeoutError, _ConnectionLostError):
                continue  # idempotent on message_id: resend on the next connection
            finally:
                self._pending.pop(request_id, None)

    async def send_group(
        self, group_id: UUID, message_id: bytes, timestamp: int, body: bytes
    ) -> None:
        """Sends one Sender Key ciphertext to a group (``group_send``); the server fans it out
        to every other member device. Retried on a new connection like `send`.

        Raises:
            SendFailedError: the server refused (``not_a_member``, ``mailbox_full``, ...).
            TransportError: as `send`.
        """
        try:
            async with asyncio.timeout(self._send_deadline):
                while True:
                    connection = await self._wait_connected()
                    request_id = next(self._ids)
                    future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
                    self._pending[request_id] = future
                    frame = GroupSend(
                        id=request_id,
                        group_id=group_id,
                        message_id=message_id,
                        timestamp=timestamp,
                        body=body,
                    )
                    try:
                        await connection.send(encode_frame(frame))
                        result = await asyncio.wait_for(future, self._timeout)
                        break
                    except (ConnectionClosed, TimeoutError, _ConnectionLostError):
                        continue  # idempotent on message_id
                    finally:
                        self._pending.pop(request_id, None)
        except TimeoutError:
            raise TransportError(
                "the server did not confirm the message in time; it may or may not be queued"
            ) from None
        if not result.ok:
            raise SendFailedError(result)

    async def ack(self, seqs: list[int]) -> None:
        """Acknowledges envelopes: the server deletes them and sends delivery receipts.

        An ack lost with a dropped connection is harmless: the server redelivers and the
        client's dedup suppresses the copy.
        """
        connection = self._connection
        if connection is None:
            return
        for start in range(0, len(seqs), MAX_ACK_SEQS):
            with contextlib.suppress(ConnectionClosed):
                await connection.send(encode_frame(Ack(seqs=seqs[start : start + MAX_ACK_SEQS])))

    async def wait_closed(self) -> None:
        """Waits until the channel stopped for good (see `closed_reason`)."""
        await self._stopped.wait()

    async def _wait_connected(self) -> ClientConnection:
        while True:
            if self._stopped.is_set():
                raise TransportError(self.closed_reason or "the connection was closed")
            if self._connection is not None and self._connected.is_set():
                return self._connection
            stopped = asyncio.ensure_future(self._stopped.wait())
            connected = asyncio.ensure_future(self._connected.wait())
            try:
                await asyncio.wait({stopped, connected}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                connected.cancel()

    async def _open(self) -> ClientConnection:
        try:
            connection = await connect(
                self._url,
                additional_headers={"Authorization": self._auth.header},
                max_size=MAX_FRAME_BYTES,
                open_timeout=self._timeout,
                logger=_ws_log,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                self._stop("the server refused this device's credentials")
                raise TransportError(self.closed_reason or "") from None
            raise TransportError(f"the server refused the connection (HTTP {status})") from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise TransportError(f"cannot reach the server at {self._url}: {exc}") from None
        self._connection = connection
        self.connections += 1
        self._connected.set()
        return connection

    async def _run(self, connection: ClientConnection) -> None:
        backoff = 0.05
        while not self._stopped.is_set():
            await self._read(connection)
            self._connected.clear()
            self._fail_pending(_ConnectionLostError())
            while not self._stopped.is_set():
                try:
                    connection = await self._open()
                except TransportError:
                    if self._stopped.is_set():
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                backoff = 0.05
                break

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for data in connection:
                if isinstance(data, str):
                    _log.warning("ignoring a text frame from the server")
                    continue
                try:
                    frame = decode_server_frame(data)
                except FrameError as exc:
                    _log.warning("ignoring a malformed frame from the server: %s", exc.code)
                    continue
                match frame:
                    case Result():
                        future = self._pending.get(frame.id)
                        if future is not None and not future.done():
                            future.set_result(frame)
                    case Envelope() | Drained():
                        self._incoming.put_nowait(frame)
                    case ErrorFrame():
                        _log.warning("server reported a protocol error: %s", frame.code)
        except ConnectionClosed:
            pass
        code = connection.close_code
        if code == CloseCode.REPLACED:
            self._stop("another connection of this device replaced this one")
        elif code == CloseCode.AUTH:
            self._stop("the server refused this device's credentials")

    async def _dispatch(self) -> None:
        # Apart from the reader, so that a handler may itself send without a deadlock.
        while True:
            frame = await self._incoming.get()
            try:
                await self._on_incoming(frame)
            except Exception as exc:  # the handler's bug must not stop the channel
                _log.error("incoming handler failed: %s", type(exc).__name__)

    def _stop(self, reason: str) -> None:
        self.closed_reason = reason
        self._stopped.set()
        self._connected.clear()

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)


class _ConnectionLostError(Exception):
    """Internal: the connection dropped while a `send` waited for its result."""
