"""RedisRouter's answers beyond routing (issue 7 follow-up), against a real Redis: which
devices are connected on any node (push), and re-checks of live connections for revocations
that were not heard. Two routers in one process play two nodes; connections are fakes."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from redis.asyncio import Redis

from kurir.server.connections import Attachable
from kurir.server.redis_testing import require_redis
from kurir.server.routing_redis import ALL_CHANNEL, RedisRouter
from kurir.server.testing import SeededRng
from kurir.server.types import DeviceId, DeviceRef

from .test_routing_redis import FakeConnection, a_device, registered, start, until


@pytest.fixture
async def redis_url() -> str:
    return await require_redis()


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[Callable[[], RedisRouter]]:
    started: list[RedisRouter] = []

    def make() -> RedisRouter:
        router = RedisRouter(redis_url, rng=SeededRng(uuid.uuid4().bytes))
        started.append(router)
        return router

    yield make
    for router in started:
        await router.close()


async def test_connected_finds_devices_held_by_any_node(
    nodes: Callable[[], RedisRouter],
) -> None:
    one, two = await start(nodes()), await start(nodes())
    here, there, nowhere = a_device(), a_device(), a_device()
    await registered(one, here)
    await registered(two, there)
    assert await one.connected([here, there, nowhere]) == {here, there}
    assert await two.connected([nowhere]) == set()
    assert await two.connected([]) == set()


async def test_without_redis_only_local_devices_count_as_connected() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    router = RedisRouter(f"redis://127.0.0.1:{port}", rng=SeededRng(1))
    try:
        here, elsewhere = a_device(), a_device()
        router.attach(here, FakeConnection())
        # "elsewhere" may be connected to another node: unknown, so it gets a push
        assert await router.connected([here, elsewhere]) == {here}
    finally:
        await router.close()


class RecordingCheck:
    """A LiveCheck that revokes the devices it is told to and records what it saw."""

    def __init__(self, revoke: set[DeviceRef]) -> None:
        self.revoke = revoke
        self.seen: list[list[DeviceRef]] = []

    async def __call__(
        self, live: Sequence[tuple[DeviceRef, Attachable]]
    ) -> list[tuple[DeviceRef, Attachable]]:
        self.seen.append(sorted(d for d, _ in live))
        return [(d, c) for d, c in live if d in self.revoke]


async def test_a_recheck_request_rechecks_that_accounts_connections_only(
    nodes: Callable[[], RedisRouter], redis_url: str
) -> None:
    two = await start(nodes())
    gone, kept = a_device(), a_device()
    same_account_kept = DeviceRef(gone.account_id, DeviceId(2))
    check = RecordingCheck({gone})
    two.recheck_after_resubscribe(check)
    held_gone = await registered(two, gone)
    held_other = await registered(two, kept)
    held_same = await registered(two, same_account_kept)
    redis: Redis = Redis.from_url(redis_url)
    try:  # what a node that could not publish a revocation sends when Redis is back
        await redis.publish(ALL_CHANNEL, f"ca another-node {gone.account_id}")
    finally:
        await redis.aclose()
    await until(held_gone.revoked)
    assert check.seen == [sorted([gone, same_account_kept])]
    assert not held_other.revoked.is_set()
    assert not held_same.revoked.is_set()
    assert await two.connected([gone, kept]) == {kept}


async def test_a_late_revocation_is_rechecked_not_applied_blindly(
    nodes: Callable[[], RedisRouter],
) -> None:
    # A revocation that arrives after the account connected again with its new credentials
    # (its publish was retried once the other node had Redis back) must not close that
    # connection: the check, which reads the database, decides.
    one, two = await start(nodes()), await start(nodes())
    current, stale = a_device(), a_device()
    check = RecordingCheck({stale})
    two.recheck_after_resubscribe(check)
    held_current = await registered(two, current)
    held_stale = await registered(two, stale)
    one.revoke_account(current.account_id)
    one.revoke_device(stale)
    await until(held_stale.revoked)
    assert check.seen == [[current], [stale]]
    assert not held_current.revoked.is_set()
    assert await two.connected([current]) == {current}
