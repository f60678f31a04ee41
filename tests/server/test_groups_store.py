"""The GroupStore contract, run against the memory and SQLite engines (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from kurir.server.storage.errors import MailboxFull
from kurir.server.storage.groups import (
    GroupFull,
    GroupId,
    GroupStore,
    MemberSettings,
    NotAdmin,
    Role,
    UnknownGroup,
    UnknownMember,
)
from kurir.server.storage.memory import MemoryEngine
from kurir.server.storage.protocols import Storage, StorageEngine
from kurir.server.storage.records import NewDevice, OutgoingEnvelope
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

G = GroupId(UUID(int=100))
IDS = [AccountId(UUID(int=i)) for i in range(1, 6)]
A, B, C, D, E = IDS
DEVICE = NewDevice(None, 1, b"s" * 16, b"h" * 32)
FAR = 10**15


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    engine: StorageEngine = (
        MemoryEngine() if request.param == "memory" else SqliteEngine.open(tmp_path / "k.db")
    )
    for i, account_id in enumerate(IDS):
        await engine.storage.accounts.register(
            Address("messenger", str(1000 + i)), new_account_id=account_id, device=DEVICE, now=1
        )
    try:
        yield engine.storage
    finally:
        await engine.close()


def _groups(storage: Storage) -> GroupStore:
    assert storage.groups is not None
    return storage.groups


async def test_create_and_read(storage: Storage) -> None:
    groups = _groups(storage)
    made = await groups.create(
        G, name="n", avatar=b"av", creator=A, members=[B, C, B, A], now=5, cap=10
    )
    assert [(m.account_id, m.role) for m in made.members] == [
        (A, Role.ADMIN),
        (B, Role.MEMBER),
        (C, Role.MEMBER),
    ]
    assert made.members[1].address == Address("messenger", "1001")
    assert (made.revision, made.created_at, made.avatar) == (1, 5, b"av")
    assert await groups.get(G, C) == made
    assert await groups.list_for(B) == [made]
    assert await groups.list_for(D) == []
    with pytest.raises(UnknownGroup):
        await groups.get(G, D)


async def test_refusals_change_nothing(storage: Storage) -> None:
    groups = _groups(storage)
    with pytest.raises(GroupFull):
        await groups.create(G, name="n", avatar=None, creator=A, members=[B, C], now=1, cap=2)
    with pytest.raises(UnknownMember):
        await groups.create(
            G, name="n", avatar=None, creator=A, members=[AccountId(UUID(int=99))], now=1, cap=9
        )
    assert await groups.list_for(A) == []
    made = await groups.create(G, name="n", avatar=None, creator=A, members=[B], now=1, cap=3)
    with pytest.raises(NotAdmin):
        await groups.add_members(G, actor=B, accounts=[C], now=2, cap=3)
    with pytest.raises(GroupFull):
        await groups.add_members(G, actor=A, accounts=[C, D], now=2, cap=3)
    with pytest.raises(UnknownMember):
        await groups.add_members(G, actor=A, accounts=[AccountId(UUID(int=98))], now=2, cap=3)
    with pytest.raises(UnknownGroup):
        await groups.add_members(G, actor=D, accounts=[C], now=2, cap=3)
    with pytest.raises(NotAdmin):
        await groups.remove_member(G, actor=B, target=A, now=2)
    with pytest.raises(UnknownMember):
        await groups.remove_member(G, actor=A, target=C, now=2)
    with pytest.raises(NotAdmin):
        await groups.set_role(G, actor=B, target=B, role=Role.ADMIN, now=2)
    with pytest.raises(UnknownGroup):
        await groups.update_settings(G, D, MemberSettings(archived=True))
    with pytest.raises(UnknownGroup):
        await groups.fanout_devices(G, D)
    assert await groups.get(G, A) == made


async def test_changes_bump_the_revision(storage: Storage) -> None:
    groups = _groups(storage)
    await groups.create(G, name="n", avatar=None, creator=A, members=[B], now=1, cap=9)
    added = await groups.add_members(G, actor=A, accounts=[C, B], now=2, cap=9)
    assert (added.revision, [m.account_id for m in added.members]) == (2, [A, B, C])
    same = await groups.add_members(G, actor=A, accounts=[B], now=3, cap=9)
    assert same.revision == 2
    promoted = await groups.set_role(G, actor=A, target=C, role=Role.ADMIN, now=4)
    assert (promoted.revision, promoted.member(C) is not None) == (3, True)
    removed = await groups.remove_member(G, actor=C, target=A, now=5)
    assert removed is not None
    assert [m.account_id for m in removed.members] == [B, C]
    left = await groups.remove_member(G, actor=C, target=C, now=6)
    assert left is not None
    assert [(m.account_id, m.role) for m in left.members] == [(B, Role.ADMIN)]
    assert await groups.remove_member(G, actor=B, target=B, now=7) is None
    assert await groups.list_for(B) == []


async def test_settings_and_fanout(storage: Storage) -> None:
    groups = _groups(storage)
    await groups.create(G, name="n", avatar=None, creator=A, members=[B], now=1, cap=9)
    second = await storage.accounts.add_device(B, DEVICE, now=2, max_devices=5)
    await groups.update_settings(G, B, MemberSettings(True, 99, "ding"))
    got = await groups.get(G, B)
    member = got.member(B)
    assert member is not None
    assert member.settings == MemberSettings(True, 99, "ding")
    assert member.devices == (DeviceId(1), second)
    assert sorted(await groups.fanout_devices(G, A)) == sorted(
        [DeviceRef(A, DeviceId(1)), DeviceRef(B, DeviceId(1)), DeviceRef(B, second)]
    )


async def test_fan_out_is_one_atomic_idempotent_enqueue(storage: Storage) -> None:
    groups = _groups(storage)
    await groups.create(G, name="n", avatar=None, creator=A, members=[B, C], now=1, cap=9)
    a2 = await storage.accounts.add_device(A, DEVICE, now=2, max_devices=5)
    mid = b"m" * 16
    template = OutgoingEnvelope(A, DeviceId(1), mid, 7, A, DeviceId(1), "x:1", mid, 5, b"ct")
    sender = DeviceRef(A, DeviceId(1))
    woken = await groups.fan_out(G, sender, template, now=10, expires_at=FAR, cap=2)
    expected = {DeviceRef(A, a2), DeviceRef(B, DeviceId(1)), DeviceRef(C, DeviceId(1))}
    assert set(woken) == expected
    assert await groups.fan_out(G, sender, template, now=11, expires_at=FAR, cap=2) == []
    for ref in expected:
        (got,) = await storage.mailboxes.fetch(
            ref.account_id, ref.device_id, after_seq=0, limit=10, now=12
        )
        assert (got.body, got.type, got.source, got.source_device) == (b"ct", 7, A, 1)
        assert list(woken.envelopes[ref]) == [got]  # handed to live connections as is
    assert await storage.mailboxes.fetch(A, DeviceId(1), after_seq=0, limit=10, now=12) == []
    with pytest.raises(UnknownGroup):
        await groups.fan_out(G, DeviceRef(D, DeviceId(1)), template, now=12, expires_at=FAR, cap=2)
    # B's mailbox reaches the cap: the whole fan-out is refused, nobody gets the copy
    other = OutgoingEnvelope(B, DeviceId(1), b"o" * 16, 1, None, None, None, b"o" * 16, 1, b"z")
    await storage.mailboxes.enqueue([other], now=12, expires_at=FAR, cap=9)
    second = OutgoingEnvelope(
        A, DeviceId(1), b"n" * 16, 7, A, DeviceId(1), "x:1", b"n" * 16, 6, b"c"
    )
    with pytest.raises(MailboxFull):
        await groups.fan_out(G, sender, second, now=13, expires_at=FAR, cap=2)
    for ref in expected:
        box = await storage.mailboxes.fetch(
            ref.account_id, ref.device_id, after_seq=0, limit=10, now=14
        )
        assert [e.message_id for e in box if e.message_id == b"n" * 16] == []
    # acknowledged copies are not enqueued again
    await storage.mailboxes.acknowledge(
        C, DeviceId(1), [1], now=15, expires_at=FAR, receipt_source_address=None
    )
    assert await groups.fan_out(G, sender, template, now=16, expires_at=FAR, cap=9) == []
    assert await storage.mailboxes.last_seq(C, DeviceId(1)) == 1
    assert await storage.mailboxes.last_seq(A, DeviceId(1)) == 1  # the receipt from C


async def test_members_carry_each_devices_registration_id(storage: Storage) -> None:
    groups = _groups(storage)
    await groups.create(G, name="n", avatar=None, creator=A, members=[B], now=5, cap=10)
    linked = NewDevice(None, 4711, b"s" * 16, b"h" * 32)
    await storage.accounts.add_device(B, linked, now=6, max_devices=5)
    member = (await groups.get(G, A)).member(B)
    assert member is not None
    assert (member.devices, member.registrations) == ((1, 2), (1, 4711))
    # re-registration: device 1 again, under a new registration id (its device 2 is gone)
    again = NewDevice(None, 812, b"s" * 16, b"h" * 32)
    await storage.accounts.register(
        Address("messenger", "1001"), new_account_id=AccountId(UUID(int=99)), device=again, now=7
    )
    member = (await groups.get(G, A)).member(B)
    assert member is not None
    assert (member.devices, member.registrations) == ((1,), (812,))
