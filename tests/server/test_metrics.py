"""``GET /metrics``: Prometheus text of one node, guarded by a token or by loopback."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from kurir.server.config import ServerConfig, load_apps
from kurir.server.testing import start_server
from kurir.wire.frames import Ack, Envelope, Result

from .helpers import drain, message, recv_frame, register, send, send_frame, sync

_COUNTS = ("accepted", "queued", "delivered", "acknowledged")


def samples(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_loopback_scrapes_without_a_token() -> None:
    async with start_server(None) as server, httpx.AsyncClient() as http:
        answer = await http.get(server.base_url + "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    values = samples(answer.text)
    assert values["kurir_connections"] == 0
    assert values["kurir_redis_up"] == 1  # single node: nothing to reach
    for name in _COUNTS:
        assert values[f"kurir_envelopes_{name}_total"] == 0


async def test_with_a_token_only_its_bearer_scrapes() -> None:
    config = ServerConfig(apps=load_apps(), metrics_token="rahasia-metrik-0123456789")
    async with start_server(None, config=config) as server, httpx.AsyncClient() as http:
        url = server.base_url + "/metrics"
        refused = [
            await http.get(url),
            await http.get(url, headers={"Authorization": "Bearer salah"}),
            await http.get(url, headers={"Authorization": "Basic cmFoYXNpYQ=="}),
        ]
        allowed = await http.get(url, headers={"Authorization": "Bearer rahasia-metrik-0123456789"})
    assert [a.status_code for a in refused] == [403, 403, 403]
    assert refused[0].json()["error"]["code"] == "forbidden"
    assert allowed.status_code == 200
    assert "kurir_connections" in allowed.text


def test_the_token_stays_out_of_the_config_repr() -> None:
    config = ServerConfig(apps=load_apps(), metrics_token="rahasia", redis="redis://:pw@r:6379")
    assert "rahasia" not in repr(config)
    assert "pw@" not in repr(config)


async def test_the_message_counts_follow_a_send_its_delivery_and_its_ack() -> None:
    async with start_server(None) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        alice = await register(http, server, "whatsapp:+6281234567890", registration_id=11)
        bob = await register(http, server, "instagram:@bob", registration_id=22)
        async with (
            connect(server.ws_url, additional_headers=alice.auth) as a,
            connect(server.ws_url, additional_headers=bob.auth) as b,
        ):
            await drain(a)
            await drain(b)
            await send_frame(a, send(1, bob, b"m" * 16, message(1, 22, b"counted")))
            assert await recv_frame(a) == Result(1, True)
            envelope = await recv_frame(b)
            assert isinstance(envelope, Envelope)
            await send_frame(b, Ack([envelope.seq]))
            receipt = await recv_frame(a)
            assert isinstance(receipt, Envelope)
            await sync(b, bob)
        values = samples((await http.get("/metrics")).text)
    # accepted: the message and bob's empty sync send; delivered: the message and alice's
    # receipt; queued and acknowledged: only what devices sent
    assert {n: values[f"kurir_envelopes_{n}_total"] for n in _COUNTS} == {
        "accepted": 2,
        "queued": 1,
        "delivered": 2,
        "acknowledged": 1,
    }
