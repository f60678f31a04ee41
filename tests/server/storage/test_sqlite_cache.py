"""The SQLite engine's read cache: a cached policy view is always what a fresh read returns.

The enqueue of a first message updates the pair's cached views in place (no re-read); these
tests fail if a view stays stale after any change, or if a view read while an enqueue ran is
kept.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest

from kurir.server.storage.metadata_records import (
    AccountSettings,
    ConversationState,
    PolicyView,
    Reachability,
)
from kurir.server.storage.metadata_sqlite import SqliteMetadataStore
from kurir.server.storage.records import NewDevice, OutgoingEnvelope, SendCount
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.storage.sqlite_cache import CachedMetadataStore, ReadCache, WatchedDatabase
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address

IDS = [AccountId(UUID(int=i + 1)) for i in range(4)]
KEYS = {a: (f"messenger:{i + 1}",) for i, a in enumerate(IDS)}
DEVICE = NewDevice(None, 1, b"s", b"h")


async def _engine(path: Path) -> SqliteEngine:
    engine = SqliteEngine.open(path / "k.db")
    for i, account in enumerate(IDS):
        await engine.storage.accounts.register(
            Address("messenger", str(i + 1)), new_account_id=account, device=DEVICE, now=1
        )
    return engine


def _metadata(engine: SqliteEngine) -> CachedMetadataStore:
    metadata = engine.storage.metadata
    assert isinstance(metadata, CachedMetadataStore)
    return metadata


def _envelope(to: AccountId, sender: AccountId, key: bytes) -> OutgoingEnvelope:
    return OutgoingEnvelope(to, DeviceId(1), key, 1, sender, DeviceId(1), None, key, 1, b"x")


class _ReadCounter:
    """Counts the reads that reach the database (a view served from the cache is none)."""

    def __init__(self, engine: SqliteEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        db = engine._db
        read = db.read
        self.count = 0

        async def counted(fn: Callable[[Any], Any]) -> Any:
            self.count += 1
            return await read(fn)

        monkeypatch.setattr(db, "read", counted)


async def test_a_first_contact_updates_the_cached_views_without_a_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await _engine(tmp_path)
    s, m = engine.storage, _metadata(engine)
    a, b = IDS[0], IDS[1]
    try:
        # both directions cached before the pair ever met
        assert (await m.policy_view(b, a, KEYS[a])).state is None
        assert (await m.policy_view(a, b, KEYS[b])).state is None
        reads = _ReadCounter(engine, monkeypatch)
        count = SendCount(a, b, ConversationState.REQUEST)
        await s.mailboxes.enqueue(
            [_envelope(b, a, b"1" * 16)], now=2, expires_at=10**15, cap=10, count=count
        )
        assert (await m.policy_view(b, a, KEYS[a])).state is ConversationState.REQUEST
        assert (await m.policy_view(a, b, KEYS[b])).state is ConversationState.ACCEPTED
        assert reads.count == 0  # served from the cache, updated in place
        # b declines a: the generation moves, the next send is dropped
        await m.set_state(b, a, ConversationState.DECLINED, now=3)
        assert (await m.policy_view(b, a, KEYS[a])).state is ConversationState.DECLINED
        # a block, and a reachability change, after the first contact show at once
        await m.block(b, a, now=4)
        assert (await m.policy_view(b, a, KEYS[a])).blocked
        await m.put_settings(b, AccountSettings(Reachability.NOBODY))
        view = await m.policy_view(b, a, KEYS[a])
        assert (view.reachability, view.blocked) == (Reachability.NOBODY, True)
        # b replies: b's side becomes accepted again, a's stays accepted
        reply = SendCount(b, a, ConversationState.ACCEPTED)
        await s.mailboxes.enqueue(
            [_envelope(a, b, b"2" * 16)], now=5, expires_at=10**15, cap=10, count=reply
        )
        assert (await m.policy_view(b, a, KEYS[a])).state is ConversationState.ACCEPTED
        assert (await m.policy_view(a, b, KEYS[b])).state is ConversationState.ACCEPTED
    finally:
        await engine.close()


async def test_cached_views_equal_fresh_reads_under_concurrent_changes(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    s, m = engine.storage, _metadata(engine)
    fresh = SqliteMetadataStore(engine._db)  # no cache
    rng = random.Random(7)
    serial = 0

    def change() -> Awaitable[object]:
        nonlocal serial
        serial += 1
        owner, peer = rng.sample(IDS, 2)
        kind = rng.random()
        if kind < 0.6:
            state = rng.choice([ConversationState.REQUEST, ConversationState.ACCEPTED])
            return s.mailboxes.enqueue(
                [_envelope(peer, owner, serial.to_bytes(16, "big"))],
                now=serial,
                expires_at=10**15,
                cap=10_000,
                count=SendCount(owner, peer, state),
            )
        if kind < 0.75:
            state = rng.choice(list(ConversationState))
            return m.set_state(owner, peer, state, now=serial)
        if kind < 0.85:
            if rng.random() < 0.5:
                return m.block(owner, peer, now=serial)
            return m.unblock(owner, peer)
        if kind < 0.95:
            reach = AccountSettings(rng.choice(list(Reachability)))
            return m.put_settings(owner, reach)
        return m.replace_contacts(owner, list(KEYS[peer]), now=serial)

    def look() -> Awaitable[PolicyView]:
        owner, peer = rng.sample(IDS, 2)
        return m.policy_view(owner, peer, KEYS[peer])

    try:
        for _ in range(60):
            # changes and cached reads interleaved: reads run while enqueues are in flight
            await asyncio.gather(
                *(change() if rng.random() < 0.6 else look() for _ in range(rng.randint(1, 8)))
            )
            for owner in IDS:
                for peer in IDS:
                    if owner != peer:
                        cached = await m.policy_view(owner, peer, KEYS[peer])
                        assert cached == await fresh.policy_view(owner, peer, KEYS[peer])
    finally:
        await engine.close()


class _Generation:
    generation = 0


A, B = IDS[0], IDS[1]
NONE = PolicyView(None, False, None, False)


def _cache() -> tuple[ReadCache, _Generation]:
    db = _Generation()
    return ReadCache(cast(WatchedDatabase, db)), db


def test_a_view_read_while_an_enqueue_ran_is_not_kept() -> None:
    cache, _ = _cache()
    enqueue = cache.token(A, B)
    read = cache.token(B, A)  # a read of b's view starts while the enqueue is in flight
    cache.sent(SendCount(A, B, ConversationState.REQUEST), enqueue)
    cache.put_view(B, A, KEYS[A], NONE, read)  # it may predate the enqueue: refused
    assert cache.view(B, A, KEYS[A]) is None


def test_a_cached_view_follows_the_enqueue() -> None:
    cache, _ = _cache()
    cache.put_view(B, A, KEYS[A], NONE, cache.token(B, A))
    cache.put_view(A, B, KEYS[B], NONE, cache.token(A, B))
    cache.sent(SendCount(A, B, ConversationState.REQUEST), cache.token(A, B))
    assert cache.view(B, A, KEYS[A]) == PolicyView(None, False, ConversationState.REQUEST, False)
    assert cache.view(A, B, KEYS[B]) == PolicyView(None, False, ConversationState.ACCEPTED, False)
    # b's side exists (declined): a send that accepts a's side leaves b's state alone
    declined = PolicyView(None, True, ConversationState.DECLINED, True)
    cache.put_view(B, A, KEYS[A], declined, cache.token(B, A))
    cache.sent(SendCount(A, B, ConversationState.REQUEST), cache.token(A, B))
    assert cache.view(B, A, KEYS[A]) == declined


@pytest.mark.parametrize("meanwhile", ["enqueue", "write", "reverse"])
def test_the_pair_is_forgotten_if_something_returned_while_the_enqueue_ran(
    meanwhile: str,
) -> None:
    cache, db = _cache()
    declined = PolicyView(None, False, ConversationState.DECLINED, False)
    enqueue = cache.token(A, B)
    if meanwhile == "write":
        db.generation += 1  # e.g. b's answer to a request returned first
    elif meanwhile == "enqueue":
        cache.sent(SendCount(A, B, ConversationState.REQUEST), cache.token(A, B))
    else:
        cache.sent(SendCount(B, A, ConversationState.REQUEST), cache.token(B, A))
    # a view read after that, as the database then was
    cache.put_view(B, A, KEYS[A], declined, cache.token(B, A))
    cache.put_view(A, B, KEYS[B], declined, cache.token(A, B))
    cache.sent(SendCount(A, B, ConversationState.REQUEST), enqueue)
    # the order of the two is unknown here: neither view is kept, the next send reads
    assert cache.view(B, A, KEYS[A]) is None
    assert cache.view(A, B, KEYS[B]) is None
