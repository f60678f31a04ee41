"""Group pushes with several nodes: only member devices connected to no node are pushed.

Real ``kurir serve`` processes over one scratch PostgreSQL schema and the local Redis; raw
devices, so that what the server does with a ``group_send`` is all there is to see. Node one
handles the ``group_send``; a member connected to node two must count as online there (the
Redis router's presence), while an offline member is pushed.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import httpx
from redis.asyncio import Redis

from e2e.multinode.nodes import logged, running_nodes, until
from e2e.multinode.raw import RawConnection, register
from kurir.server.routing_redis import device_key
from kurir.server.types import AccountId, DeviceId, DeviceRef

LOUD = b"push: wake-up (silent=False"
SILENT = b"push: wake-up (silent=True"


async def test_a_member_online_on_another_node_gets_no_group_push(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as (one, two):
        sender = await register(one.url, "whatsapp:+6281200000505", 95)
        online = await register(one.url, "instagram:@grouponline", 96)
        offline = await register(one.url, "messenger:1000505", 97)
        async with httpx.AsyncClient(base_url=one.url) as http:
            # the offline member's pushes read differently: silent (it mutes by default)
            muted = await http.put(
                "/v1/settings",
                json={"default_muted": True},
                headers={"Authorization": offline.authorization},
            )
            assert muted.status_code in (200, 204), muted.text
            made = await http.post(
                "/v1/groups",
                json={
                    "name": "lintas node",
                    "members": [str(online.account_id), str(offline.account_id)],
                },
                headers={"Authorization": sender.authorization},
            )
            assert made.status_code == 200, made.text
        group_id = UUID(made.json()["group_id"])
        talker = await RawConnection.open(one.url, sender)
        await talker.drained()
        listener = await RawConnection.open(two.url, online)
        await listener.drained()

        assert (await talker.group_send(group_id, b"one")).ok
        assert (await listener.envelope()).body == b"one"
        # both pushes of one fan-out are made before its result: the offline member's is
        # logged, and none for the member connected to node two
        await until(logged(one.log_path, SILENT))
        assert not await logged(one.log_path, LOUD)()

        await listener.close()
        key = device_key(DeviceRef(AccountId(online.account_id), DeviceId(1)))
        redis: Redis = Redis.from_url(redis_url)
        try:  # node two releases the device's key once its socket is gone

            async def released() -> bool:
                return not await redis.exists(key)

            await until(released)
        finally:
            await redis.aclose()
        assert (await talker.group_send(group_id, b"two")).ok  # offline everywhere now
        await until(logged(one.log_path, LOUD))
        await talker.close()
