"""Nothing acknowledged is lost, duplicated or reordered when a node or Redis dies under load.

Issue 7's fault tests. Two SDK clients chat both ways without pause; meanwhile a node is
SIGKILLed and restarted (on PostgreSQL with two nodes and Redis; on SQLite with one node), or
Redis is restarted empty. Clients reach the nodes through failover proxies (load balancers),
so they reconnect to whichever node is up. Afterwards every message the server acknowledged to
its sender has reached the recipient's application exactly once, in sending order.
Each fault waits for progress of the load (acknowledged messages), never for time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from e2e.harness import BUDI, RINA
from e2e.multinode.conftest import OpenClient
from e2e.multinode.load import Talker, check_exactly_once_in_order, run_load
from e2e.multinode.nodes import FailoverProxy, restart, running_nodes, start_node
from kurir.server.redis_testing import can_restart_local_redis, restart_local_redis

STEP = 12  # acknowledged messages per talker between the phases of a fault


async def progress(talkers: list[Talker], more: int) -> None:
    """Wait until every talker got ``more`` further messages acknowledged."""
    for talker in talkers:
        await talker.sent(len(talker.acknowledged) + more)


@contextlib.asynccontextmanager
async def proxies(*orders: list[int]) -> AsyncIterator[list[FailoverProxy]]:
    started = [FailoverProxy(order) for order in orders]
    try:
        for proxy in started:
            await proxy.start()
        yield started
    finally:
        for proxy in started:
            await proxy.close()


async def test_sigkill_of_one_of_two_nodes_under_load_loses_nothing(
    tmp_path: Path, database_url: str, redis_url: str, open_client: OpenClient
) -> None:
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as nodes:
        one, two = nodes
        async with proxies([one.port, two.port], [two.port, one.port]) as (to_one, to_two):
            budi = Talker("budi", await open_client(BUDI, to_one.url), RINA)
            rina = Talker("rina", await open_client(RINA, to_two.url), BUDI)
            talkers = [budi, rina]

            @contextlib.asynccontextmanager
            async def kill_node_one() -> AsyncIterator[None]:
                await progress(talkers, STEP)
                await nodes[0].kill()  # budi's node: its socket dies mid-load
                await progress(talkers, STEP)  # both now talk through node two
                nodes[0] = await restart(nodes[0], database=database_url, redis=redis_url)
                to_one.sever()  # budi goes back to the restarted node one
                await progress(talkers, STEP)
                yield

            await run_load(talkers, kill_node_one())
    check_exactly_once_in_order(budi, rina)
    check_exactly_once_in_order(rina, budi)
    assert len(budi.acknowledged) >= 3 * STEP


async def test_sigkill_of_a_single_sqlite_node_under_load_loses_nothing(
    tmp_path: Path, open_client: OpenClient
) -> None:
    node = await start_node(
        tmp_path / "node-1.log", data_dir=tmp_path / "node-1-data", database=None, redis=None
    )
    try:
        budi = Talker("budi", await open_client(BUDI, node.url), RINA)
        rina = Talker("rina", await open_client(RINA, node.url), BUDI)
        talkers = [budi, rina]

        @contextlib.asynccontextmanager
        async def kill_the_node() -> AsyncIterator[None]:
            nonlocal node
            await progress(talkers, STEP)
            await node.kill()
            node = await restart(node, database=None, redis=None)  # same port, same file
            await progress(talkers, STEP)
            yield

        await run_load(talkers, kill_the_node())
    finally:
        await node.stop()
    check_exactly_once_in_order(budi, rina)
    check_exactly_once_in_order(rina, budi)


async def test_a_redis_restart_under_load_loses_nothing(
    tmp_path: Path, database_url: str, redis_url: str, open_client: OpenClient
) -> None:
    reason = can_restart_local_redis()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot restart Redis: {reason}", pytrace=False)
        pytest.skip(reason)
    async with running_nodes(tmp_path, 2, database=database_url, redis=redis_url) as nodes:
        one, two = nodes
        budi = Talker("budi", await open_client(BUDI, one.url), RINA)
        rina = Talker("rina", await open_client(RINA, two.url), BUDI)
        talkers = [budi, rina]

        @contextlib.asynccontextmanager
        async def restart_redis() -> AsyncIterator[None]:
            await progress(talkers, STEP)
            await restart_local_redis()  # everything in Redis is gone; always left running
            await progress(talkers, STEP)
            yield

        await run_load(talkers, restart_redis())
    check_exactly_once_in_order(budi, rina)
    check_exactly_once_in_order(rina, budi)
