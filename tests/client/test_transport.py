"""Tests of kurir.client.transport against a small in-test WebSocket server on a real socket.

The fake server speaks the wire frames of kurir.wire.frames and is driven step by step from
the test through queues, so nothing waits on time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from kurir.client.errors import ServerError, TransportError
from kurir.client.transport import DeviceAuth, HttpApi, MessageChannel, SendFailedError, ws_url
from kurir.wire import api
from kurir.wire.auth import parse_basic_auth
from kurir.wire.frames import (
    Ack,
    ClientFrame,
    DeviceMessage,
    Drained,
    Envelope,
    Result,
    ResultError,
    Send,
    decode_client_frame,
    encode_frame,
)

AUTH = DeviceAuth(UUID("11111111-1111-4111-8111-111111111111"), 1, "A" * 22)


class FakeServer:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[ServerConnection, ClientFrame]] = asyncio.Queue()
        self.connected: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.refuse_auth = False
        self.server: Server | None = None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        credentials = parse_basic_auth(request.headers["Authorization"])
        if self.refuse_auth or credentials.password != "A" * 22:
            return connection.respond(401, "no\n")
        return None

    async def handler(self, connection: ServerConnection) -> None:
        await self.connected.put(connection)
        async for data in connection:
            assert isinstance(data, bytes)
            await self.frames.put((connection, decode_client_frame(data)))

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    async with serve(
        server.handler, "127.0.0.1", 0, process_request=server.process_request
    ) as ws_server:
        server.server = ws_server
        yield server


class Incoming:
    def __init__(self) -> None:
        self.items: asyncio.Queue[Envelope | Drained] = asyncio.Queue()

    async def __call__(self, frame: Envelope | Drained) -> None:
        await self.items.put(frame)


def _envelope(seq: int) -> Envelope:
    return Envelope(
        seq=seq,
        type=1,
        source=uuid4(),
        source_device=1,
        source_address="messenger:1000423",
        message_id=bytes([seq]) * 16,
        timestamp=1,
        server_timestamp=2,
        body=b"ciphertext",
    )


MESSAGES = [DeviceMessage(device=1, registration_id=7, type=1, body=b"c")]


async def test_send_waits_for_its_result(fake: FakeServer) -> None:
    channel = MessageChannel(fake.url, AUTH, Incoming())
    await channel.start()
    to = uuid4()
    task = asyncio.create_task(channel.send(to, b"m" * 16, 5, MESSAGES))
    connection, frame = await fake.frames.get()
    assert isinstance(frame, Send)
    assert (frame.to, frame.message_id, frame.timestamp, frame.messages) == (
        to,
        b"m" * 16,
        5,
        MESSAGES,
    )
    assert not task.done()
    await connection.send(encode_frame(Result(id=frame.id, ok=True)))
    await task
    await channel.close()


async def test_refused_send_carries_the_device_lists(fake: FakeServer) -> None:
    channel = MessageChannel(fake.url, AUTH, Incoming())
    await channel.start()
    task = asyncio.create_task(channel.send(uuid4(), b"m" * 16, 5, MESSAGES))
    connection, frame = await fake.frames.get()
    assert isinstance(frame, Send)
    error = ResultError(code="mismatched_devices", message="devices", missing=[2], extra=[3])
    await connection.send(encode_frame(Result(id=frame.id, ok=False, error=error)))
    with pytest.raises(SendFailedError) as info:
        await task
    assert (info.value.code, info.value.missing, info.value.extra) == (
        "mismatched_devices",
        [2],
        [3],
    )
    await channel.close()


async def test_envelopes_arrive_in_order_and_acks_reach_the_server(fake: FakeServer) -> None:
    incoming = Incoming()
    channel = MessageChannel(fake.url, AUTH, incoming)
    await channel.start()
    connection = await fake.connected.get()
    for seq in (1, 2, 3):
        await connection.send(encode_frame(_envelope(seq)))
    await connection.send(encode_frame(Drained()))
    got = [await incoming.items.get() for _ in range(4)]
    assert [g.seq for g in got if isinstance(g, Envelope)] == [1, 2, 3]
    assert isinstance(got[3], Drained)
    await channel.ack([1, 2, 3])
    _, frame = await fake.frames.get()
    assert frame == Ack(seqs=[1, 2, 3])
    await channel.close()


async def test_send_is_retried_on_a_new_connection_after_a_drop(fake: FakeServer) -> None:
    channel = MessageChannel(fake.url, AUTH, Incoming())
    await channel.start()
    first = await fake.connected.get()
    task = asyncio.create_task(channel.send(uuid4(), b"r" * 16, 5, MESSAGES))
    _, frame = await fake.frames.get()
    assert isinstance(frame, Send)
    await channel.drop()  # the result of the first attempt is lost with the connection
    second = await fake.connected.get()
    assert second is not first
    connection, again = await fake.frames.get()
    assert connection is second
    assert isinstance(again, Send)
    assert again.message_id == frame.message_id  # same id: the server's enqueue is idempotent
    await second.send(encode_frame(Result(id=again.id, ok=True)))
    await task
    assert channel.connections == 2
    await channel.close()


async def test_replaced_connection_stops_the_channel(fake: FakeServer) -> None:
    channel = MessageChannel(fake.url, AUTH, Incoming())
    await channel.start()
    connection = await fake.connected.get()
    await connection.close(4001, "replaced")
    await channel.wait_closed()
    assert channel.closed_reason is not None
    assert "replaced" in channel.closed_reason
    with pytest.raises(TransportError, match="replaced"):
        await channel.send(uuid4(), b"m" * 16, 5, MESSAGES)
    await channel.close()


async def test_refused_credentials_fail_the_start(fake: FakeServer) -> None:
    fake.refuse_auth = True
    channel = MessageChannel(fake.url, AUTH, Incoming())
    with pytest.raises(TransportError, match="credentials"):
        await channel.start()


async def test_unreachable_server_is_a_transport_error() -> None:
    channel = MessageChannel("http://127.0.0.1:9", AUTH, Incoming())
    with pytest.raises(TransportError, match="cannot reach"):
        await channel.start()


def test_ws_url() -> None:
    assert ws_url("http://h:1/") == "ws://h:1/v1/ws"
    assert ws_url("https://h") == "wss://h/v1/ws"
    with pytest.raises(TransportError):
        ws_url("ftp://h")


def test_auth_repr_hides_the_password() -> None:
    assert "AAAA" not in repr(AUTH)


async def test_http_errors_become_server_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/directory":
            return httpx.Response(
                200,
                json={
                    "results": [
                        {"address": "x:1", "account_id": str(AUTH.account_id), "devices": [1]}
                    ]
                },
            )
        return httpx.Response(
            403, json={"error": {"code": "wrong_app", "message": "client key of another app"}}
        )

    http = HttpApi("http://server", AUTH, transport=httpx.MockTransport(handler))
    result = await http.directory(["x:1"])
    assert result.results[0].account_id == AUTH.account_id
    assert seen[0].headers["Authorization"] == AUTH.header
    request = api.RegistrationRequest(
        address="x:1", code="123456", password="A" * 22, registration_id=1
    )
    with pytest.raises(ServerError) as info:
        await http.register(request, "key")
    assert (info.value.code, info.value.status) == ("wrong_app", 403)
    assert seen[1].headers["X-Kurir-App-Key"] == "key"
    assert "Authorization" not in seen[1].headers
    await http.aclose()


async def test_http_unreachable_and_garbage() -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=b"<html>")

    http = HttpApi("http://server", AUTH, transport=httpx.MockTransport(garbage))
    with pytest.raises(ServerError, match="HTTP 500"):
        await http.key_counts()
    await http.aclose()
    down = HttpApi("http://127.0.0.1:9", AUTH)
    with pytest.raises(TransportError, match="cannot reach"):
        await down.key_counts()
    await down.aclose()
    with pytest.raises(TransportError):
        HttpApi("127.0.0.1:9")


async def test_no_credential_reaches_the_log_even_at_debug(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel = MessageChannel(fake.url, AUTH, Incoming())
    await channel.start()
    await fake.connected.get()
    await channel.close()
    # everything logged on the client's side (the in-test server's own log is not ours)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG was captured
    text = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    assert "A" * 22 not in text
    assert AUTH.header.split(" ")[1] not in text


async def test_a_send_the_server_never_confirms_gives_up_with_a_clear_error(
    fake: FakeServer,
) -> None:
    # the timeout also bounds the opening handshake: room for a loaded machine
    channel = MessageChannel(fake.url, AUTH, Incoming(), timeout=0.5, send_deadline=1.5)
    await channel.start()
    with pytest.raises(TransportError, match="may or may not be queued"):
        await channel.send(uuid4(), b"m" * 16, 5, MESSAGES)
    _, first = await fake.frames.get()
    _, again = await fake.frames.get()  # it was resent (same id) before giving up
    assert isinstance(first, Send)
    assert isinstance(again, Send)
    assert first.message_id == again.message_id
    await channel.close()


async def test_malformed_server_frames_are_skipped(fake: FakeServer) -> None:
    incoming = Incoming()
    channel = MessageChannel(fake.url, AUTH, incoming)
    await channel.start()
    connection = await fake.connected.get()
    await connection.send(b"\xc1 not msgpack")
    await connection.send("a text frame")
    await connection.send(encode_frame(_envelope(9)))
    got = await incoming.items.get()
    assert isinstance(got, Envelope)
    assert got.seq == 9
    assert channel.connections == 1  # still the same connection
    await channel.close()
