"""RedisRouter against a real Redis: routing hints between nodes, and recovery from losing them.

Two routers in one process play two nodes. Connections are recording fakes. Nothing waits
on time: every step waits for the event that the router must cause. Without a reachable Redis
these tests skip with the reason (fail under CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest
from redis.asyncio import Redis

from e2e.multinode.private_redis import private_redis
from kurir.server.redis_testing import require_redis
from kurir.server.routing import LocalRouter, Router, open_router, router_healthy
from kurir.server.routing_redis import RedisRouter, _Refresh, device_key, node_channel
from kurir.server.testing import SeededRng
from kurir.server.types import AccountId, DeviceId, DeviceRef

GUARD: Final = 20.0  # only against a hung test; no assertion depends on time


class FakeConnection:
    """Records what the router asked of it."""

    def __init__(self) -> None:
        self.wakes = 0
        self.woken = asyncio.Event()
        self.replaced = asyncio.Event()
        self.revoked = asyncio.Event()

    def wake(self) -> None:
        self.wakes += 1
        self.woken.set()

    def replace(self) -> None:
        self.replaced.set()

    def revoke(self) -> None:
        self.revoked.set()


async def until(event: asyncio.Event) -> None:
    async with asyncio.timeout(GUARD):
        await event.wait()


async def until_true(check: Callable[[], bool], nudge: asyncio.Event) -> None:
    """Wait until ``check()`` holds, re-checking whenever ``nudge`` is set."""
    async with asyncio.timeout(GUARD):
        while not check():
            nudge.clear()
            await nudge.wait()


def a_device(device_id: int = 1) -> DeviceRef:
    return DeviceRef(AccountId(uuid.uuid4()), DeviceId(device_id))


@pytest.fixture
async def redis_url() -> str:
    return await require_redis()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[Callable[..., RedisRouter]]:
    """A factory of started routers (nodes), all closed at the end."""
    started: list[RedisRouter] = []

    def make(*, key_ttl_ms: int = 30_000, refresh_interval_s: float = 5.0) -> RedisRouter:
        router = RedisRouter(
            redis_url,
            rng=SeededRng(uuid.uuid4().bytes),
            key_ttl_ms=key_ttl_ms,
            refresh_interval_s=refresh_interval_s,
        )
        started.append(router)
        return router

    yield make
    for router in started:
        await router.close()


async def start(router: RedisRouter) -> RedisRouter:
    await router.start()
    await until(router.subscribed)
    return router


async def registered(router: RedisRouter, device: DeviceRef) -> FakeConnection:
    """Attach a fake connection and wait until Redis names this router as its holder (the
    router wakes a connection once its key is written)."""
    connection = FakeConnection()
    router.attach(device, connection)
    await until(connection.woken)
    connection.woken.clear()
    return connection


def test_open_router_picks_local_without_redis() -> None:
    router: Router = open_router(None, rng=SeededRng(1))
    assert isinstance(router, LocalRouter)
    assert isinstance(open_router("redis://127.0.0.1:6379", rng=SeededRng(1)), RedisRouter)


def test_keys_and_channels_carry_cluster_hash_tags() -> None:
    device = DeviceRef(AccountId(uuid.UUID(int=7)), DeviceId(3))
    assert device_key(device) == "kurir:dev:{00000000-0000-0000-0000-000000000007}:3"
    assert node_channel("n1") == "kurir:node:{n1}"


async def test_a_wake_reaches_the_node_holding_the_device(
    nodes: Callable[..., RedisRouter], redis: Redis
) -> None:
    one, two = await start(nodes()), await start(nodes())
    device = a_device()
    held = await registered(two, device)
    assert await redis.get(device_key(device)) is not None
    one.wake(device)
    await until(held.woken)
    assert len(one) == 0
    assert len(two) == 1


async def test_a_second_connection_on_another_node_closes_the_first(
    nodes: Callable[..., RedisRouter],
) -> None:
    one, two = await start(nodes()), await start(nodes())
    device = a_device()
    first = await registered(one, device)
    second = await registered(two, device)
    await until(first.replaced)
    assert not second.replaced.is_set()
    assert len(one) == 0  # the replaced connection is forgotten
    one.wake(device)  # and the wake goes to the newer holder
    await until(second.woken)


async def test_a_second_connection_on_the_same_node_closes_the_first(
    nodes: Callable[..., RedisRouter],
) -> None:
    one = await start(nodes())
    device = a_device()
    first = await registered(one, device)
    second = await registered(one, device)
    assert first.replaced.is_set()
    assert not second.replaced.is_set()


async def test_detach_releases_the_key_but_not_a_newer_holders(
    nodes: Callable[..., RedisRouter], redis: Redis
) -> None:
    one, two = await start(nodes()), await start(nodes())
    device = a_device()
    first = await registered(one, device)
    await registered(two, device)
    await until(first.replaced)
    one.detach(device, first)  # too late: two holds the key now
    lone = a_device()
    alone = await registered(one, lone)
    one.detach(lone, alone)
    # the worker runs in order: once a later registration is visible, the releases ran
    await registered(one, a_device())
    assert await redis.get(device_key(lone)) is None
    value = await redis.get(device_key(device))
    assert value is not None
    assert isinstance(value, bytes)
    assert value.decode().startswith(two.node_id + " ")


async def test_revocations_reach_every_node(nodes: Callable[..., RedisRouter]) -> None:
    one, two = await start(nodes()), await start(nodes())
    device, other = a_device(1), a_device(1)
    linked = DeviceRef(device.account_id, DeviceId(2))
    held = await registered(two, device)
    held_linked = await registered(two, linked)
    held_other = await registered(two, other)
    one.revoke_device(linked)
    await until(held_linked.revoked)
    one.revoke_account(device.account_id)
    await until(held.revoked)
    assert not held_other.revoked.is_set()
    assert len(two) == 1


async def test_a_lost_key_is_re_registered_and_the_connection_re_reads_its_mailbox(
    nodes: Callable[..., RedisRouter], redis: Redis
) -> None:
    # what a Redis restart does to every key at once, here to one key
    one = await start(nodes(key_ttl_ms=5_000, refresh_interval_s=0.05))
    device = a_device()
    held = await registered(one, device)
    await redis.delete(device_key(device))
    await until(held.woken)  # re-registered by the refresh, then woken to re-drain
    assert await redis.get(device_key(device)) is not None


async def test_a_missed_takeover_is_noticed_at_the_next_refresh(
    nodes: Callable[..., RedisRouter], redis: Redis
) -> None:
    one = await start(nodes(key_ttl_ms=5_000, refresh_interval_s=0.05))
    device = a_device()
    held = await registered(one, device)
    # another node took the device over while its notice was lost (e.g. Redis restarted)
    await redis.set(device_key(device), "elsewhere c0ffee")
    await until(held.replaced)
    assert len(one) == 0


async def test_without_redis_connections_poll_and_nothing_breaks(
    nodes: Callable[..., RedisRouter],
) -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    router = RedisRouter(f"redis://127.0.0.1:{port}", rng=SeededRng(3), poll_interval_s=0.01)
    await router.start()
    try:
        device = a_device()
        held = FakeConnection()
        router.attach(device, held)
        router.wake(a_device())  # for a device elsewhere: dropped, not raised
        await until_true(lambda: held.wakes >= 3, held.woken)  # polled again and again
        assert router.degraded
        router.detach(device, held)
        assert len(router) == 0
    finally:
        await router.close()


async def test_a_refresh_racing_a_new_connection_does_not_close_it(
    nodes: Callable[..., RedisRouter],
) -> None:
    one, two = await start(nodes()), await start(nodes())
    device = a_device()
    first = await registered(one, device)
    # a refresh queued just before the attach runs in the same Redis batch as its
    # registration; it must not mistake the new connection for one that lost its key
    two._ops.put_nowait(_Refresh())
    second = FakeConnection()
    two.attach(device, second)
    await until(second.woken)
    await until(first.replaced)
    assert not second.replaced.is_set()
    assert len(two) == 1


async def until_state(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds, asking again every 10 ms: the router's health has no
    event to wait on. Only the guard limits it; no assertion depends on time."""
    for _ in range(int(GUARD * 100)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition never held")


async def test_an_idle_node_sees_redis_come_back(tmp_path: Path) -> None:
    # No connection and no traffic: nothing but the periodic tick talks to Redis, so only
    # its ping can tell the node (and the kurir_redis_up gauge) that Redis is back.
    async with private_redis(tmp_path) as redis:
        router = RedisRouter(redis.url, rng=SeededRng(5), poll_interval_s=0.01)
        await start(router)
        try:
            assert router_healthy(router)
            await redis.stop()
            await until_state(lambda: router.degraded)  # the subscription noticed
            assert not router_healthy(router)
            await redis.start()
            await until_state(lambda: not router.degraded)
            assert router_healthy(router)
            assert len(router) == 0
        finally:
            await router.close()
