"""Several nodes over one PostgreSQL database and one Redis behave as one server.

Real ``kurir serve`` processes on loopback, real SDK clients (or raw WebSockets where a close
code must be seen), one shared scratch schema and the local Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis

from e2e.harness import BUDI, GUARD_SECONDS, MEGA, RINA, collect
from e2e.multinode.conftest import OpenClient
from e2e.multinode.nodes import FailoverProxy, running_nodes
from e2e.multinode.raw import RawConnection, register
from kurir.client.client import Client
from kurir.client.content import GroupMessage, Text
from kurir.client.events import MessageEvent
from kurir.server.config import RateLimits
from kurir.wire.auth import encode_basic_auth, encode_password
from kurir.wire.frames import CloseCode, Envelope


def texts(events: list[object]) -> list[str]:
    return [e.body.text for e in events if isinstance(getattr(e, "body", None), Text)]  # type: ignore[attr-defined]


async def test_clients_on_three_nodes_chat_across_apps(
    tmp_path: Path, database_url: str, redis_url: str, open_client: OpenClient
) -> None:
    async with running_nodes(tmp_path, 3, database=database_url, redis=redis_url) as nodes:
        budi = await open_client(BUDI, nodes[0].url)
        rina = await open_client(RINA, nodes[1].url)
        mega = await open_client(MEGA, nodes[2].url)
        await budi.send_text(RINA, "halo rina dari whatsapp")
        await budi.send_text(MEGA, "halo mega dari whatsapp")
        got, _ = await collect(rina, messages=1)
        assert texts(list(got)) == ["halo rina dari whatsapp"]
        got, _ = await collect(mega, messages=1)
        assert texts(list(got)) == ["halo mega dari whatsapp"]
        await rina.send_text(BUDI, "hai budi, dari instagram")
        await mega.send_text(RINA, "rina, ini mega")
        got, receipts = await collect(budi, messages=1, receipts=2)
        assert texts(list(got)) == ["hai budi, dari instagram"]
        assert len(receipts) == 2  # both recipients' devices, on two other nodes, stored them
        got, _ = await collect(rina, messages=1, receipts=1)
        assert texts(list(got)) == ["rina, ini mega"]


async def test_a_device_moving_between_nodes_keeps_its_mailbox(
    tmp_path: Path, database_url: str, redis_url: str, open_client: OpenClient
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as nodes:
        one, two = nodes
        proxy = FailoverProxy([one.port, two.port])
        await proxy.start()
        try:
            budi = await open_client(BUDI, two.url)
            rina = await open_client(RINA, proxy.url)  # on node one
            await budi.send_text(RINA, "pertama")
            got, _ = await collect(rina, messages=1)
            await rina.disconnect()
            for text in ("kedua", "ketiga", "keempat"):
                await budi.send_text(RINA, text)  # queued while rina is offline
            proxy.prefer(two.port)
            await rina.connect()  # now on node two, with the mailbox it left on node one
            await rina.wait_drained()
            got, _ = await collect(rina, messages=3)
            assert texts(list(got)) == ["kedua", "ketiga", "keempat"]
            # moved while connected: the channel reconnects to the preferred node by itself
            proxy.prefer(one.port)
            proxy.sever()
            await budi.send_text(RINA, "kelima")
            got, _ = await collect(rina, messages=1)
            assert texts(list(got)) == ["kelima"]
            _, receipts = await collect(budi, receipts=5)
            assert len({r.message_id for r in receipts}) == 5
            assert rina.pending_events() == []
        finally:
            await proxy.close()


async def test_two_connections_of_one_device_on_two_nodes_end_with_the_older_closed(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as nodes:
        one, two = nodes
        device = await register(one.url, RINA, registration_id=11)
        sender = await register(two.url, BUDI, registration_id=22)
        outbox = await RawConnection.open(two.url, sender)
        await outbox.drained()
        first = await RawConnection.open(one.url, device)
        await first.drained()
        # a message routed across nodes reaches `first`: node one's routing key is in Redis
        assert (await outbox.send(device, b"ke node satu")).ok
        assert (await first.envelope()).body == b"ke node satu"
        second = await RawConnection.open(two.url, device)
        assert await first.close_code() == CloseCode.REPLACED
        await second.drained()
        assert (await outbox.send(device, b"ke yang baru")).ok
        envelope = await second.envelope()
        assert isinstance(envelope, Envelope)
        assert envelope.body == b"ke yang baru"
        await second.close()
        await outbox.close()


async def test_metrics_count_per_node_and_name_no_one(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as nodes:
        one, two = nodes
        device = await register(one.url, RINA, registration_id=11)
        sender = await register(two.url, BUDI, registration_id=22)
        inbox = await RawConnection.open(one.url, device)
        await inbox.drained()
        outbox = await RawConnection.open(two.url, sender)
        await outbox.drained()
        assert (await outbox.send(device, b"dihitung")).ok
        await inbox.envelope()  # acknowledged too
        assert (await outbox.send(device, b"barrier")).ok  # frames are handled in order:
        await inbox.envelope()
        async with httpx.AsyncClient() as http:
            text_two = (await http.get(two.url + "/metrics")).text
            text_one = (await http.get(one.url + "/metrics")).text
        assert "kurir_envelopes_accepted_total 2.0" in text_two
        assert "kurir_envelopes_queued_total 2.0" in text_two
        assert "kurir_connections 1.0" in text_two
        assert "kurir_redis_up 1.0" in text_two
        assert "kurir_envelopes_delivered_total 2.0" in text_one
        assert "kurir_envelopes_accepted_total 0.0" in text_one
        for text in (text_one, text_two):
            assert str(device.account_id) not in text
            assert str(sender.account_id) not in text
            assert "rina" not in text
        await inbox.close()
        await outbox.close()


async def test_failed_authentications_are_limited_across_nodes(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # a database of its own in Redis: this test exhausts the bucket of the host 127.0.0.1
    isolated = redis_url.rsplit("/", 1)[0] + "/3"
    async with running_nodes(tmp_path, 2, database=database_url, redis=isolated) as nodes:
        one, two = nodes
        wrong = {"Authorization": encode_basic_auth(uuid.uuid4(), 1, encode_password(b"x" * 16))}
        try:
            async with httpx.AsyncClient() as http:
                for _ in range(RateLimits().failed_auth_per_host.burst):
                    answer = await http.get(one.url + "/v1/devices", headers=wrong)
                    assert answer.status_code == 401
                answer = await http.get(two.url + "/v1/devices", headers=wrong)
                assert answer.status_code == 429  # node two knows what node one counted
                assert int(answer.headers["Retry-After"]) >= 1
        finally:
            redis: Redis = Redis.from_url(isolated)
            async for key in redis.scan_iter(match="kurir:rl:*"):
                await redis.delete(key)
            await redis.aclose()


async def test_a_group_of_three_apps_on_three_nodes(
    tmp_path: Path, database_url: str, redis_url: str, open_client: OpenClient
) -> None:
    async with running_nodes(tmp_path, 3, database=database_url, redis=redis_url) as nodes:
        budi = await open_client(BUDI, nodes[0].url)
        mega = await open_client(MEGA, nodes[1].url)
        rina = await open_client(RINA, nodes[2].url)
        info = await budi.groups.create("Makan malam", [MEGA, RINA])
        await budi.groups.send_text(info.group_id, "halo semua")  # fanned out by node one
        for member in (mega, rina):
            got = await group_texts(member, 1)
            assert got == [(BUDI, "halo semua")]
        await rina.groups.send_text(info.group_id, "halo dari node tiga")
        assert await group_texts(budi, 1) == [(RINA, "halo dari node tiga")]
        assert await group_texts(mega, 1) == [(RINA, "halo dari node tiga")]


async def group_texts(client: Client, count: int) -> list[tuple[str, str]]:
    """The next ``count`` group texts as (sender, text); receipts and group changes skipped."""
    found: list[tuple[str, str]] = []
    async with asyncio.timeout(GUARD_SECONDS):
        while len(found) < count:
            event = await client.next_event()
            client.handled(event)
            if isinstance(event, MessageEvent) and isinstance(event.body, GroupMessage):
                message = event.body.message
                if isinstance(message, Text):
                    found.append((event.sender, message.text))
    return found


async def test_re_registration_on_one_node_closes_the_old_device_on_another(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as nodes:
        one, two = nodes
        old = await register(one.url, RINA, registration_id=11)
        connection = await RawConnection.open(one.url, old)
        await connection.drained()
        new = await register(two.url, RINA, registration_id=12)  # the same address, anew
        assert new.account_id == old.account_id
        assert await connection.close_code() == CloseCode.AUTH
