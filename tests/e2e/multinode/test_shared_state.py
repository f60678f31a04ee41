"""What several nodes share besides mailboxes and routes: pending codes (issue 7).

Real ``kurir serve`` processes over one scratch PostgreSQL schema and the local Redis. A code
made through one node must work through another (behind a load balancer with no sticky
sessions, the two requests may land anywhere), exactly once.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis

from e2e.harness import app_key
from e2e.multinode.nodes import FailoverProxy, logged, running_nodes, start_node, until
from e2e.multinode.private_redis import private_redis
from e2e.multinode.raw import DEV_CODE, RawConnection, register
from kurir.server.routing_redis import device_key
from kurir.server.shared_limits import CONTACT_UPLOAD_LIMIT
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.auth import encode_basic_auth, encode_password
from kurir.wire.frames import CloseCode


async def test_registration_verified_through_another_node(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    address = "whatsapp:+6281200000101"
    headers = {"X-Kurir-App-Key": app_key(address)}
    body = {
        "address": address,
        "code": DEV_CODE,
        "password": encode_password(os.urandom(32)),
        "registration_id": 41,
    }
    async with (
        running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as (one, two),
        httpx.AsyncClient(base_url=one.url) as on_one,
        httpx.AsyncClient(base_url=two.url) as on_two,
    ):
        # a registration without a code request is refused on every node
        refused = await on_two.post("/v1/accounts", json=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "invalid_code"
        asked = await on_one.post("/v1/verification", json={"address": address}, headers=headers)
        assert asked.status_code == 202, asked.text
        done = await on_two.post("/v1/accounts", json=body, headers=headers)
        assert done.status_code == 200, done.text
        again = await on_one.post("/v1/accounts", json=body, headers=headers)
        assert again.status_code == 403  # the code was used up through node two
        assert again.json()["error"]["code"] == "invalid_code"


async def test_link_code_made_on_one_node_is_redeemed_once_on_another(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 3, database=database_url, redis=redis_url) as nodes:
        primary = await register(nodes[0].url, "instagram:@linker", 51)
        auth = {"Authorization": primary.authorization}
        async with httpx.AsyncClient(base_url=nodes[0].url) as http:
            made = await http.post("/v1/devices/link-code", headers=auth)
            assert made.status_code == 200, made.text
        code = made.json()["code"]
        password = encode_password(os.urandom(32))

        async def redeem(url: str, registration_id: int) -> httpx.Response:
            async with httpx.AsyncClient(base_url=url) as http:
                return await http.post(
                    "/v1/devices/link",
                    json={"code": code, "password": password, "registration_id": registration_id},
                )

        # nodes two and three race for the same code: exactly one links a device
        answers = await asyncio.gather(redeem(nodes[1].url, 52), redeem(nodes[2].url, 53))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 403], [a.text for a in answers]
        won = next(a for a in answers if a.status_code == 200).json()
        lost = next(a for a in answers if a.status_code == 403).json()
        assert lost["error"]["code"] == "invalid_code"
        assert uuid.UUID(won["account_id"]) == primary.account_id
        assert won["device_id"] == 2
        # the linked device authenticates through the first node, and the account lists it
        header = {"Authorization": encode_basic_auth(primary.account_id, 2, password)}
        async with httpx.AsyncClient(base_url=nodes[0].url) as http:
            listed = await http.get("/v1/devices", headers=header)
            assert listed.status_code == 200, listed.text
            assert [d["device_id"] for d in listed.json()["devices"]] == [1, 2]
            reused = await http.post(
                "/v1/devices/link",
                json={"code": code, "password": password, "registration_id": 54},
            )
            assert reused.status_code == 403  # used up through another node


async def test_contact_uploads_share_one_budget_across_nodes(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as (one, two):
        device = await register(one.url, "messenger:1000777", 61)
        auth = {"Authorization": device.authorization}
        upload = {"entries": ["+6281234567890"]}
        async with (
            httpx.AsyncClient(base_url=one.url) as on_one,
            httpx.AsyncClient(base_url=two.url) as on_two,
        ):
            for i in range(CONTACT_UPLOAD_LIMIT.burst):  # the burst, spread over both nodes
                http = on_one if i % 2 else on_two
                answer = await http.post("/v1/contacts", json=upload, headers=auth)
                assert answer.status_code == 200, answer.text
            for http in (on_one, on_two):  # spent on both, not per node
                answer = await http.post("/v1/contacts", json=upload, headers=auth)
                assert answer.status_code == 429, answer.text


async def test_a_revocation_made_while_redis_is_down_still_closes_the_old_connection(
    tmp_path: Path, database_url: str
) -> None:
    address = "messenger:1000888"
    async with (
        private_redis(tmp_path) as redis,
        running_nodes(tmp_path, 2, database=database_url, redis=redis.url) as (one, two),
    ):
        old = await register(one.url, address, 71)
        bystander = await register(one.url, "instagram:@bystander", 72)
        sender = await register(one.url, "whatsapp:+6281200000303", 73)
        stale = await RawConnection.open(two.url, old)
        await stale.drained()
        watching = await RawConnection.open(two.url, bystander)
        await watching.drained()
        await redis.stop()
        # re-registered through node one while no revocation can be published
        again = await register(one.url, address, 74)
        assert again.account_id == old.account_id
        await redis.start()  # empty: the lost revocation is not in it either
        # node two re-subscribes, finds the re-registration in the database, closes the
        # connection whose credentials are gone ...
        assert await stale.close_code() == CloseCode.AUTH
        # ... and keeps the one whose credentials are still good (checked in the same pass)
        talker = await RawConnection.open(one.url, sender)
        await talker.drained()
        result = await talker.send(bystander, b"still here")
        assert result.ok, result
        assert (await watching.envelope()).body == b"still here"
        fresh = await RawConnection.open(two.url, again)  # the new credentials work anywhere
        await fresh.drained()
        for connection in (talker, watching, fresh):
            await connection.close()


async def test_a_revocation_unpublished_by_a_cut_off_node_goes_out_when_it_is_back(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    link = FailoverProxy([redis_port])  # node one's own path to Redis, which we cut
    await link.start()
    one = two = None
    try:
        via_link = link.url.replace("http://", "redis://") + "/0"
        one = await start_node(
            tmp_path / "node-1.log", data_dir=tmp_path / "d1", database=database_url, redis=via_link
        )
        two = await start_node(
            tmp_path / "node-2.log",
            data_dir=tmp_path / "d2",
            database=database_url,
            redis=redis_url,
        )
        address = "instagram:@cutoff"
        old = await register(one.url, address, 81)
        stale = await RawConnection.open(two.url, old)
        await stale.drained()
        link.ports = []  # node one alone loses Redis; node two's subscription stays up
        link.sever()
        again = await register(one.url, address, 82)  # its revocation cannot be published
        assert again.account_id == old.account_id
        link.ports = [redis_port]
        # node one reaches Redis again and asks every node to re-check the account
        assert await stale.close_code() == CloseCode.AUTH
        fresh = await RawConnection.open(two.url, again)
        await fresh.drained()
        await fresh.close()
    finally:
        for node in (one, two):
            if node is not None:
                await node.stop()
        await link.close()


async def test_a_device_connected_to_another_node_gets_no_push(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as (one, two):
        sender = await register(one.url, "whatsapp:+6281200000404", 91)
        recipient = await register(one.url, "instagram:@online", 92)
        marker = await register(one.url, "messenger:1000999", 93)
        async with httpx.AsyncClient(base_url=one.url) as http:
            muted = await http.put(  # the marker's pushes read differently: silent
                "/v1/settings",
                json={"default_muted": True},
                headers={"Authorization": marker.authorization},
            )
            assert muted.status_code in (200, 204), muted.text
        talker = await RawConnection.open(one.url, sender)
        await talker.drained()
        listener = await RawConnection.open(two.url, recipient)
        await listener.drained()
        assert (await talker.send(recipient, b"one")).ok  # online on node two: no push
        assert (await listener.envelope()).body == b"one"
        assert (await talker.send(marker, b"marker")).ok  # offline: a (silent) push
        # node one logs in order: a push for "one" would come before the marker's
        await until(logged(one.log_path, b"push: wake-up (silent=True"))
        assert not await logged(one.log_path, b"push: wake-up (silent=False")()
        await listener.close()
        key = device_key(DeviceRef(AccountId(recipient.account_id), DeviceId(1)))
        redis: Redis = Redis.from_url(redis_url)
        try:  # node two releases the device's key once the socket is gone

            async def released() -> bool:
                return not await redis.exists(key)

            await until(released)
        finally:
            await redis.aclose()
        assert (await talker.send(recipient, b"two")).ok  # offline everywhere: a push
        await until(logged(one.log_path, b"push: wake-up (silent=False"))
        await talker.close()
