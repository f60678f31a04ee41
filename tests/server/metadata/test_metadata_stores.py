"""The SQLite metadata store behaves as the in-memory reference, operation by operation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from kurir.server.storage.memory import MemoryEngine
from kurir.server.storage.metadata_memory import MemoryMetadataStore
from kurir.server.storage.metadata_protocols import MetadataStore, PolicyViewReader
from kurir.server.storage.metadata_records import (
    AccountSettings,
    AvatarRecord,
    ConversationState,
    PolicyView,
    PushSubscription,
    Reachability,
)
from kurir.server.storage.records import NewDevice
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address

A = AccountId(UUID(int=1))
B = AccountId(UUID(int=2))
C = AccountId(UUID(int=3))


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    if request.param == "memory":
        engine: MemoryEngine | SqliteEngine = MemoryEngine()
    else:
        engine = await asyncio.to_thread(SqliteEngine.open, tmp_path / "k.db")
    for n, account in enumerate((A, B, C)):
        await engine.storage.accounts.register(
            Address("messenger", str(100 + n)),
            new_account_id=account,
            device=NewDevice(None, 7, b"s" * 16, b"h" * 32),
            now=1,
        )
    metadata = engine.storage.metadata
    assert metadata is not None
    if request.param == "memory":
        assert isinstance(metadata, MemoryMetadataStore)
    yield metadata
    await engine.close()


async def test_settings_and_avatar(store: MetadataStore) -> None:
    assert await store.stored_settings(A) is None
    assert (await store.settings(A, default=Reachability.NOBODY)).reachability == "nobody"
    s = AccountSettings(Reachability.EVERYONE, "chime", True, True, "Ana", 5)
    await store.put_settings(A, s)
    assert await store.settings(A, default=Reachability.NOBODY) == s
    await store.put_avatar(A, AvatarRecord("image/png", b"png", 9))
    assert await store.avatar(A) == AvatarRecord("image/png", b"png", 9)
    await store.put_avatar(A, None)
    assert await store.avatar(A) is None


async def test_blocks(store: MetadataStore) -> None:
    await store.block(A, B, now=10)
    await store.block(A, B, now=20)  # idempotent, the first time kept
    await store.block(A, C, now=15)
    assert [(b.blocked, b.created_at) for b in await store.blocks(A)] == [(B, 10), (C, 15)]
    assert await store.is_blocked(A, B)
    assert not await store.is_blocked(B, A)
    assert await store.unblock(A, B)
    assert not await store.unblock(A, B)
    assert not await store.is_blocked(A, B)


async def test_conversations_counts_and_flags(store: MetadataStore) -> None:
    await store.record_send(A, B, recipient_state=ConversationState.REQUEST, now=100)
    await store.record_send(A, B, recipient_state=ConversationState.ACCEPTED, now=200)
    mine = await store.conversation(A, B)
    theirs = await store.conversation(B, A)
    assert mine is not None
    assert theirs is not None
    assert (mine.state, mine.sent, mine.received, mine.created_at, mine.last_activity) == (
        ConversationState.ACCEPTED,
        2,
        0,
        100,
        200,
    )
    assert (theirs.state, theirs.sent, theirs.received) == (ConversationState.REQUEST, 0, 2)
    assert await store.set_flags(B, A, archived=True, muted=None, sound="pop")
    assert not await store.set_flags(B, C, archived=True, muted=None, sound=None)
    await store.record_send(A, B, recipient_state=ConversationState.ACCEPTED, now=300)
    theirs = await store.conversation(B, A)
    assert theirs is not None
    assert (theirs.archived, theirs.sound, theirs.received) == (True, "pop", 3)
    await store.put_settings(B, AccountSettings(Reachability.CONTACTS, unarchive_on_message=True))
    await store.record_send(A, B, recipient_state=ConversationState.ACCEPTED, now=400)
    theirs = await store.conversation(B, A)
    assert theirs is not None
    assert theirs.archived is False
    # replying accepts; an explicit state change creates a row with zero counts
    await store.record_send(B, A, recipient_state=ConversationState.REQUEST, now=500)
    theirs = await store.conversation(B, A)
    assert theirs is not None
    assert theirs.state is ConversationState.ACCEPTED
    await store.set_state(C, A, ConversationState.DECLINED, now=600)
    row = await store.conversation(C, A)
    assert row is not None
    assert (row.state, row.sent, row.received) == (ConversationState.DECLINED, 0, 0)
    assert [c.peer for c in await store.conversations(A)] == [B]


async def test_contacts_and_push(store: MetadataStore) -> None:
    await store.replace_contacts(A, ["+62811", "instagram:@x"], now=5)
    assert [c.entry for c in await store.contacts(A)] == ["+62811", "instagram:@x"]
    assert await store.has_contact(A, ["nope", "instagram:@x"])
    assert not await store.has_contact(A, [])
    await store.replace_contacts(A, ["+62822"], now=6)
    assert [(c.entry, c.added_at) for c in await store.contacts(A)] == [("+62822", 6)]
    sub = PushSubscription(A, DeviceId(1), "https://p/x", "k", "a", 7)
    await store.put_push(sub)
    assert await store.push_subscription(A, DeviceId(1)) == sub
    assert await store.push_subscriptions(A) == [sub]
    assert await store.delete_push(A, DeviceId(1))
    assert await store.push_subscription(A, DeviceId(1)) is None


async def test_policy_view_matches_the_separate_reads(store: MetadataStore) -> None:
    assert isinstance(store, PolicyViewReader)
    empty = await store.policy_view(A, B, [])
    assert empty == PolicyView(None, False, None, False)
    await store.put_settings(A, AccountSettings(Reachability.NOBODY))
    await store.block(A, B, now=1)
    await store.set_state(A, B, ConversationState.DECLINED, now=2)
    await store.replace_contacts(A, ["messenger:101"], now=3)
    view = await store.policy_view(A, B, ["+62", "messenger:101"])
    assert view == PolicyView(Reachability.NOBODY, True, ConversationState.DECLINED, True)
    assert await store.policy_view(A, C, ["+62"]) == PolicyView(
        Reachability.NOBODY, False, None, False
    )
