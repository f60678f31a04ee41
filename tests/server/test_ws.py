"""The WebSocket channel over real sockets: send, deliver, ack, receipts, drained, replace."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kurir.server.config import ServerConfig, load_apps
from kurir.server.context import Services
from kurir.server.services.accounts import AuthedDevice
from kurir.server.services.messages import Courier
from kurir.server.storage.records import Enqueued, StoredEnvelope
from kurir.server.testing import FakeClock, RunningServer, start_server
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.frames import (
    Ack,
    Drained,
    Envelope,
    EnvelopeType,
    ErrorFrame,
    Result,
    ResultError,
    Send,
)
from kurir.wire.limits import MAX_FRAME_BYTES

from .helpers import Device, drain, link, message, recv_frame, register, send, send_frame, sync

ALICE = "whatsapp:+6281234567890"
BOB = "instagram:@bob"


@contextlib.asynccontextmanager
async def online(server: RunningServer, device: Device) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws_url, additional_headers=device.auth, max_size=None) as ws:
        yield ws


async def _pair(http: httpx.AsyncClient, server: RunningServer) -> tuple[Device, Device]:
    alice = await register(http, server, ALICE, registration_id=11)
    bob = await register(http, server, BOB, registration_id=22)
    return alice, bob


async def _closed(ws: ClientConnection) -> int | None:
    """Wait for the server to close; return its close code."""
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    return ws.close_code


async def test_send_deliver_ack_receipt(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, bob = await _pair(http, server)
    mid = b"\x01" * 16
    async with online(server, alice) as a:
        assert await drain(a) == ([], Drained())
        await send_frame(
            a, send(1, bob, mid, message(1, 22, b"ciphertext", EnvelopeType.PREKEY_BUNDLE))
        )
        assert await recv_frame(a) == Result(1, True)
        async with online(server, bob) as b:
            (env,), drained = await drain(b)
            assert drained == Drained()
            assert (env.seq, env.type, env.body, env.message_id) == (1, 3, b"ciphertext", mid)
            assert (env.source, env.source_device, env.source_address) == (
                alice.account_id,
                1,
                ALICE,
            )
            assert env.timestamp == 1_700_000_000_123
            assert env.server_timestamp > 0
            await send_frame(b, Ack([env.seq]))
            await sync(b, bob)
            receipt = await recv_frame(a)
            assert isinstance(receipt, Envelope)
            assert receipt.type == EnvelopeType.SERVER_DELIVERY_RECEIPT
            assert (receipt.message_id, receipt.body) == (mid, b"")
            assert (receipt.source, receipt.source_device, receipt.source_address) == (
                bob.account_id,
                1,
                BOB,
            )
            await send_frame(a, Ack([receipt.seq]))
            await sync(a, alice)
    async with online(server, bob) as b:
        assert await drain(b) == ([], Drained())
    async with online(server, alice) as a:
        assert await drain(a) == ([], Drained())


async def test_live_delivery_and_redelivery(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, bob) as b:
        assert await drain(b) == ([], Drained())
        async with online(server, alice) as a:
            await drain(a)
            for i in range(3):
                await send_frame(a, send(i, bob, bytes([i]) * 16, message(1, 22, b"m%d" % i)))
                assert await recv_frame(a) == Result(i, True)
        got = [await recv_frame(b) for _ in range(3)]
        assert [f.body for f in got if isinstance(f, Envelope)] == [b"m0", b"m1", b"m2"]
        await send_frame(b, Ack([1]))
        await sync(b, bob)
    # unacknowledged envelopes come again, in order, with the same seqs
    async with online(server, bob) as b:
        envelopes, _ = await drain(b)
        assert [(e.seq, e.body) for e in envelopes] == [(2, b"m1"), (3, b"m2")]


async def test_send_is_idempotent_on_message_id(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, alice) as a:
        await drain(a)
        for request_id in (1, 2):
            await send_frame(a, send(request_id, bob, b"m" * 16, message(1, 22, b"once")))
            assert await recv_frame(a) == Result(request_id, True)
        async with online(server, bob) as b:
            envelopes, _ = await drain(b)
            assert [e.body for e in envelopes] == [b"once"]
            await send_frame(b, Ack([envelopes[0].seq]))
            await sync(b, bob)
        receipt = await recv_frame(a)
        assert isinstance(receipt, Envelope)
        assert receipt.type == EnvelopeType.SERVER_DELIVERY_RECEIPT
        # sending the same message id again after it was acknowledged enqueues nothing
        await send_frame(a, send(3, bob, b"m" * 16, message(1, 22, b"once")))
        assert await recv_frame(a) == Result(3, True)
    async with online(server, bob) as b:
        assert await drain(b) == ([], Drained())


async def test_device_set_checks(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, alice) as a:
        await drain(a)
        await send_frame(a, send(1, bob, b"1" * 16, message(2, 22, b"x")))
        assert await recv_frame(a) == Result(
            1,
            False,
            ResultError(
                "mismatched_devices", "the device list is out of date", missing=[1], extra=[2]
            ),
        )
        await send_frame(a, send(2, bob, b"2" * 16, message(1, 23, b"x")))
        result = await recv_frame(a)
        assert isinstance(result, Result)
        assert result.error is not None
        assert (result.error.code, result.error.stale) == ("stale_devices", [1])
        await send_frame(
            a, send(3, replace(bob, account_id=alice.account_id.__class__(int=5)), b"3" * 16)
        )
        result = await recv_frame(a)
        assert isinstance(result, Result)
        assert result.error is not None
        assert result.error.code == "unknown_account"
        # to one's own account, the sending device is excluded: no other device, nothing to send
        await send_frame(a, send(4, alice, b"4" * 16))
        assert await recv_frame(a) == Result(4, True)
        await send_frame(a, send(5, alice, b"5" * 16, message(1, 11, b"x")))
        result = await recv_frame(a)
        assert isinstance(result, Result)
        assert result.error is not None
        assert (result.error.code, result.error.extra) == ("mismatched_devices", [1])
    async with online(server, bob) as b:
        assert await drain(b) == ([], Drained())


async def test_invalid_send_is_answered_and_connection_stays(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, alice) as a:
        await drain(a)
        bad = msgspec.msgpack.encode(
            {
                "op": "send",
                "id": 9,
                "to": str(bob.account_id),
                "message_id": b"short",
                "timestamp": 1,
                "messages": [],
            }
        )
        await a.send(bad)
        result = await recv_frame(a)
        assert isinstance(result, Result)
        assert (result.id, result.ok) == (9, False)
        assert result.error is not None
        assert result.error.code == "invalid_request"
        await send_frame(a, send(10, bob, b"k" * 16, message(1, 22, b"fine")))
        assert await recv_frame(a) == Result(10, True)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xc1", "malformed_frame"),
        (msgspec.msgpack.encode({"op": "what"}), "malformed_frame"),
        (b"\x00" * (MAX_FRAME_BYTES + 1), "frame_too_large"),
    ],
)
async def test_protocol_violation_closes_4000(
    http: httpx.AsyncClient, server: RunningServer, payload: bytes, code: str
) -> None:
    alice, _ = await _pair(http, server)
    async with online(server, alice) as a:
        await drain(a)
        await a.send(payload)
        frame = await recv_frame(a)
        assert isinstance(frame, ErrorFrame)
        assert frame.code == code
        assert await _closed(a) == 4000


async def test_text_frame_closes_4000(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, _ = await _pair(http, server)
    async with online(server, alice) as a:
        await drain(a)
        await a.send("hello")
        frame = await recv_frame(a)
        assert isinstance(frame, ErrorFrame)
        assert await _closed(a) == 4000


async def test_bad_credentials_close_4003(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, _ = await _pair(http, server)
    for headers in ({}, {"Authorization": alice.auth["Authorization"][:-2] + "xx"}):
        async with connect(server.ws_url, additional_headers=headers) as ws:
            frame = await recv_frame(ws)
            assert isinstance(frame, ErrorFrame)
            assert frame.code == "unauthorized"
            assert await _closed(ws) == 4003


async def test_second_connection_replaces_first(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, bob) as first:
        assert await drain(first) == ([], Drained())
        async with online(server, bob) as second:
            assert await _closed(first) == 4001
            assert await drain(second) == ([], Drained())
            async with online(server, alice) as a:
                await drain(a)
                await send_frame(a, send(1, bob, b"r" * 16, message(1, 22, b"to the new one")))
                assert await recv_frame(a) == Result(1, True)
            frame = await recv_frame(second)
            assert isinstance(frame, Envelope)
            assert frame.body == b"to the new one"


async def test_a_send_being_applied_when_the_connection_is_replaced_still_commits(
    http: httpx.AsyncClient, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await _pair(http, server)
    services: Services = server.app.state.services
    applying, release = asyncio.Event(), asyncio.Event()
    original = services.messages.send

    async def held(sender: AuthedDevice, frame: Send) -> None:
        applying.set()
        await release.wait()  # the replacement arrives while this send is being applied
        await original(sender, frame)

    monkeypatch.setattr(services.messages, "send", held)
    async with online(server, alice) as first:
        assert await drain(first) == ([], Drained())
        await send_frame(first, send(1, bob, b"h" * 16, message(1, 22, b"in flight")))
        await asyncio.wait_for(applying.wait(), 30)
        async with online(server, alice) as second:
            release.set()
            assert await _closed(first) == 4001
            assert await drain(second) == ([], Drained())
    async with online(server, bob) as b:
        (env,), _ = await drain(b)
    assert env.body == b"in flight"


async def test_mailbox_full_is_an_error(tmp_path: Path) -> None:
    config = ServerConfig(apps=load_apps(), mailbox_cap=2)
    async with (
        start_server(tmp_path, config=config) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        alice, bob = await _pair(http, server)
        async with online(server, alice) as a:
            await drain(a)
            for i in range(3):
                await send_frame(a, send(i, bob, bytes([i]) * 16, message(1, 22, b"x")))
            results = [await recv_frame(a) for _ in range(3)]
        assert results[:2] == [Result(0, True), Result(1, True)]
        assert isinstance(results[2], Result)
        assert results[2].error is not None
        assert results[2].error.code == "mailbox_full"


async def test_expired_envelopes_are_reported(tmp_path: Path) -> None:
    clock = FakeClock()
    config = ServerConfig(apps=load_apps(), envelope_ttl_ms=1000)
    async with (
        start_server(tmp_path, config=config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        alice, bob = await _pair(http, server)
        async with online(server, alice) as a:
            await drain(a)
            await send_frame(a, send(1, bob, b"e" * 16, message(1, 22, b"late")))
            assert await recv_frame(a) == Result(1, True)
        clock.advance(1001)
        services: Services = server.app.state.services
        assert await services.messages.expire() == 1
        async with online(server, bob) as b:
            assert await drain(b) == ([], Drained(expired=1))
        async with online(server, bob) as b:
            assert await drain(b) == ([], Drained())


async def test_accepted_messages_survive_a_restart(tmp_path: Path) -> None:
    async with (
        start_server(tmp_path) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        alice, bob = await _pair(http, server)
        async with online(server, alice) as a:
            await drain(a)
            await send_frame(a, send(1, bob, b"d" * 16, message(1, 22, b"durable")))
            assert await recv_frame(a) == Result(1, True)
    async with start_server(tmp_path) as server, online(server, bob) as b:
        envelopes, _ = await drain(b)
        assert [e.body for e in envelopes] == [b"durable"]


async def test_sealed_sender_hides_source_and_gets_no_receipt(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, alice) as a:
        await drain(a)
        sealed = message(1, 22, b"sealed", EnvelopeType.UNIDENTIFIED_SENDER)
        await send_frame(a, send(1, bob, b"s" * 16, sealed))
        assert await recv_frame(a) == Result(1, True)
        async with online(server, bob) as b:
            (env,), _ = await drain(b)
            assert (env.type, env.source, env.source_device, env.source_address) == (
                6,
                None,
                None,
                None,
            )
            await send_frame(b, Ack([env.seq]))
            await sync(b, bob)
        await sync(a, alice)
    async with online(server, alice) as a:
        assert await drain(a) == ([], Drained())


async def test_server_stop_closes_live_connections(tmp_path: Path) -> None:
    async with start_server(tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            alice, _ = await _pair(http, server)
        ws = await connect(server.ws_url, additional_headers=alice.auth)
        assert await drain(ws) == ([], Drained())
    # the block exited: the server is down and told the client so
    assert await _closed(ws) in {1001, 1012}
    await ws.close()


async def test_reregistration_closes_old_connections_4003(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    async with online(server, bob) as old:
        assert await drain(old) == ([], Drained())
        new_bob = await register(http, server, BOB, registration_id=23)
        assert await _closed(old) == 4003
    async with online(server, alice) as a:
        await drain(a)
        await send_frame(a, send(1, new_bob, b"n" * 16, message(1, 23, b"for the new device")))
        assert await recv_frame(a) == Result(1, True)
    async with online(server, new_bob) as b:
        envelopes, _ = await drain(b)
        assert [e.body for e in envelopes] == [b"for the new device"]


async def test_multi_device_fan_out_and_removal(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    bob2 = await link(http, bob, registration_id=33)
    alice2 = await link(http, alice, registration_id=44)
    async with online(server, alice) as a:
        await drain(a)
        # bob now has two devices: a send to device 1 only is refused
        await send_frame(a, send(1, bob, b"1" * 16, message(1, 22, b"x")))
        result = await recv_frame(a)
        assert isinstance(result, Result)
        assert result.error is not None
        assert (result.error.code, result.error.missing) == ("mismatched_devices", [2])
        both = (message(1, 22, b"to bob 1"), message(2, 33, b"to bob 2"))
        await send_frame(a, send(2, bob, b"2" * 16, *both))
        assert await recv_frame(a) == Result(2, True)
        # a sync copy to alice's own other device excludes the sending device
        await send_frame(a, send(3, alice, b"3" * 16, message(2, 44, b"sync")))
        assert await recv_frame(a) == Result(3, True)
    for device, body in ((bob, b"to bob 1"), (bob2, b"to bob 2"), (alice2, b"sync")):
        async with online(server, device) as ws:
            envelopes, _ = await drain(ws)
            assert [e.body for e in envelopes] == [body]
    async with online(server, bob2) as ws2:
        await drain(ws2)
        response = await http.delete("/v1/devices/2", headers=bob.auth)
        assert response.status_code == 204
        assert await _closed(ws2) == 4003
    assert (await http.get("/v1/devices", headers=bob2.auth)).status_code == 401
    devices = (await http.get("/v1/devices", headers=bob.auth)).json()["devices"]
    assert [d["device_id"] for d in devices] == [1]


async def test_long_backlog_is_drained_in_order(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob = await _pair(http, server)
    count = 250  # more than one fetch batch
    async with online(server, alice) as a:
        await drain(a)
        for i in range(count):  # pipelined: results come back in order
            await send_frame(a, send(i, bob, i.to_bytes(16, "big"), message(1, 22, b"%d" % i)))
        results = [await recv_frame(a) for _ in range(count)]
        assert results == [Result(i, True) for i in range(count)]
    async with online(server, bob) as b:
        envelopes, drained = await drain(b)
        assert drained == Drained()
        assert [e.seq for e in envelopes] == list(range(1, count + 1))
        assert [e.body for e in envelopes] == [b"%d" % i for i in range(count)]


async def test_handed_over_envelopes_are_sent_only_after_the_mark(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    # A connection sends a handed-over envelope only if it directly follows the highest seq
    # it sent; after a gap it reads its mailbox instead, and what it already sent it drops.
    # The "ghost" envelopes below are in no mailbox: they must never reach the device.
    alice, bob = await _pair(http, server)
    services: Services = server.app.state.services
    ref = DeviceRef(AccountId(bob.account_id), DeviceId(1))

    def ghost(seq: int) -> Enqueued:
        env = StoredEnvelope(seq, 1, None, None, None, b"g" * 16, 1, 1, b"ghost")
        return Enqueued([ref], {ref: [env]})

    async with online(server, bob) as b, online(server, alice) as a:
        assert await drain(b) == ([], Drained())
        await drain(a)
        got: list[Envelope] = []
        for i in range(3):
            await send_frame(a, send(i, bob, bytes([i]) * 16, message(1, 22, b"m%d" % i)))
            assert await recv_frame(a) == Result(i, True)
            frame = await recv_frame(b)
            assert isinstance(frame, Envelope)
            got.append(frame)
            handed = services.connections
            assert isinstance(handed, Courier)
            handed.hand_off(ghost(frame.seq + 2))  # a gap: the mailbox has nothing after it
            handed.hand_off(ghost(frame.seq))  # already sent
        assert [(e.seq, e.body) for e in got] == [(1, b"m0"), (2, b"m1"), (3, b"m2")]
        await send_frame(b, Ack([]))  # acknowledges nothing, holds up nothing
        await sync(b, bob, request_id=1)
        await send_frame(b, Ack([e.seq for e in got]))
        await sync(b, bob)
        receipts = [await recv_frame(a) for _ in range(3)]
        assert [r.seq for r in receipts if isinstance(r, Envelope)] == [1, 2, 3]


async def _until_connected(services: Services, count: int) -> None:
    async with asyncio.timeout(10):
        while len(services.connections) != count:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.005)


async def test_partly_acknowledged_envelopes_survive_a_replacement_and_a_disconnect(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    # Envelopes acknowledged in part: a replacement and a disconnect end the connection at
    # once, every ack it received is applied, and only the rest comes again.
    alice, bob = await _pair(http, server)
    services: Services = server.app.state.services
    async with online(server, alice) as a:
        await drain(a)
        for i in range(3):
            await send_frame(a, send(i, bob, bytes([i + 1]) * 16, message(1, 22, b"m%d" % i)))
            assert await recv_frame(a) == Result(i, True)
        async with online(server, bob) as b:
            envelopes, _ = await drain(b)
            assert [e.seq for e in envelopes] == [1, 2, 3]
            await send_frame(b, Ack([1]))  # 2 and 3 still due
            await sync(b, bob)
            async with online(server, bob) as again:  # replaces the first connection
                assert await _closed(b) == 4001
                assert [e.seq for e in (await drain(again))[0]] == [2, 3]
                await send_frame(again, Ack([2]))  # 3 still due
                await sync(again, bob)
        await _until_connected(services, 1)  # the peer left: its connection ended
        receipts = [await recv_frame(a) for _ in range(2)]
        assert [r.message_id for r in receipts if isinstance(r, Envelope)] == [
            b"\x01" * 16,
            b"\x02" * 16,
        ]
    async with online(server, bob) as b:
        assert [e.seq for e in (await drain(b))[0]] == [3]
