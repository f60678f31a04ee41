"""The storage conformance suite: the Protocols' contract, run against every engine."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from kurir.server.storage.errors import (
    IdentityKeyChanged,
    KeysNotSet,
    MailboxFull,
    TooManyDevices,
    UnknownDevice,
)
from kurir.server.storage.metadata_records import ConversationState
from kurir.server.storage.protocols import Storage
from kurir.server.storage.records import (
    RECEIPT_TYPE,
    KeyCounts,
    KeyUpdate,
    NewDevice,
    OneTimeKey,
    OutgoingEnvelope,
    SendCount,
    SignedKey,
)
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

ALICE = Address("whatsapp", "+6281234567890")
BOB = Address("instagram", "@bob")
A_ID = AccountId(UUID(int=1))
B_ID = AccountId(UUID(int=2))
D1 = DeviceId(1)
IK = b"\x05" + bytes(32)
SPK = SignedKey(1, b"\x05" + b"s" * 32, b"g" * 64)
LAST = SignedKey(2, b"\x08" + b"k" * 100, b"h" * 64)
FAR = 10**15


def _device(registration_id: int = 7, name: str | None = "phone") -> NewDevice:
    return NewDevice(name, registration_id, b"salt", b"hash")


async def _two_accounts(storage: Storage) -> None:
    assert (
        await storage.accounts.register(ALICE, new_account_id=A_ID, device=_device(), now=1) == A_ID
    )
    assert (
        await storage.accounts.register(BOB, new_account_id=B_ID, device=_device(9), now=2) == B_ID
    )


def _env(
    to: AccountId,
    key: bytes,
    *,
    source: AccountId | None = A_ID,
    body: bytes = b"ct",
    device: DeviceId = D1,
) -> OutgoingEnvelope:
    return OutgoingEnvelope(
        to,
        device,
        key,
        1,
        source,
        None if source is None else D1,
        "x:y",
        key[:16].ljust(16),
        5,
        body,
    )


async def test_register_and_read(storage: Storage) -> None:
    await _two_accounts(storage)
    account = await storage.accounts.get_account(A_ID)
    assert account is not None
    assert account.address == ALICE
    assert account.identity_key is None
    device = await storage.accounts.get_device(A_ID, D1)
    assert device is not None
    assert (device.registration_id, device.salt, device.password_hash, device.name) == (
        7,
        b"salt",
        b"hash",
        "phone",
    )
    assert device.created_at == 1
    assert await storage.accounts.get_device(A_ID, DeviceId(2)) is None
    assert await storage.accounts.get_account(AccountId(UUID(int=3))) is None
    assert [d.device_id for d in await storage.accounts.list_devices(B_ID)] == [1]
    found = await storage.accounts.lookup([ALICE, Address("messenger", "1"), BOB])
    assert found == {ALICE: (A_ID, [D1]), BOB: (B_ID, [D1])}


async def test_reregistration_keeps_id_and_wipes_devices_keys_mail(storage: Storage) -> None:
    await _two_accounts(storage)
    await storage.keys.update_keys(A_ID, D1, KeyUpdate(IK, SPK, LAST, (OneTimeKey(1, IK),)))
    await storage.mailboxes.enqueue(
        [_env(A_ID, b"k" * 16, source=B_ID)], now=1, expires_at=FAR, cap=10
    )
    again = await storage.accounts.register(
        ALICE,
        new_account_id=AccountId(UUID(int=99)),
        device=NewDevice(None, 8, b"s2", b"h2"),
        now=5,
    )
    assert again == A_ID
    account = await storage.accounts.get_account(A_ID)
    assert account is not None
    assert account.identity_key is None
    device = await storage.accounts.get_device(A_ID, D1)
    assert device is not None
    assert (device.registration_id, device.password_hash) == (8, b"h2")
    assert await storage.keys.take_bundle(A_ID, None) is None
    assert await storage.keys.count_one_time(A_ID, D1) == KeyCounts(0, 0)
    assert await storage.mailboxes.fetch(A_ID, D1, after_seq=0, limit=10, now=2) == []
    # a new identity key is accepted after re-registration
    await storage.keys.update_keys(A_ID, D1, KeyUpdate(b"\x05" + b"n" * 32, SPK, LAST))


async def test_first_key_upload_needs_everything(storage: Storage) -> None:
    await _two_accounts(storage)
    with pytest.raises(KeysNotSet):
        await storage.keys.update_keys(A_ID, D1, KeyUpdate(identity_key=IK, signed_prekey=SPK))
    with pytest.raises(KeysNotSet):
        await storage.keys.update_keys(A_ID, D1, KeyUpdate(signed_prekey=SPK, pq_last_resort=LAST))
    account = await storage.accounts.get_account(A_ID)
    assert account is not None
    assert account.identity_key is None  # nothing changed
    with pytest.raises(UnknownDevice):
        await storage.keys.update_keys(A_ID, DeviceId(2), KeyUpdate(IK, SPK, LAST))


async def test_identity_key_cannot_change(storage: Storage) -> None:
    await _two_accounts(storage)
    await storage.keys.update_keys(A_ID, D1, KeyUpdate(IK, SPK, LAST))
    await storage.keys.update_keys(A_ID, D1, KeyUpdate(identity_key=IK))
    with pytest.raises(IdentityKeyChanged):
        await storage.keys.update_keys(
            A_ID, D1, KeyUpdate(b"\x05" + b"z" * 32, one_time=(OneTimeKey(5, IK),))
        )
    assert await storage.keys.count_one_time(A_ID, D1) == KeyCounts(0, 0)


async def test_bundle_takes_one_time_keys_then_falls_back(storage: Storage) -> None:
    await _two_accounts(storage)
    pq1 = SignedKey(10, b"\x08" + b"p" * 10, b"q" * 64)
    await storage.keys.update_keys(
        B_ID,
        D1,
        KeyUpdate(IK, SPK, LAST, (OneTimeKey(3, b"a" * 33), OneTimeKey(4, b"b" * 33)), (pq1,)),
    )
    assert await storage.keys.count_one_time(B_ID, D1) == KeyCounts(2, 1)
    first = await storage.keys.take_bundle(B_ID, D1)
    assert first is not None
    assert first.identity_key == IK
    (dev,) = first.devices
    assert (dev.device_id, dev.registration_id, dev.signed_prekey) == (1, 9, SPK)
    assert dev.prekey == OneTimeKey(3, b"a" * 33)
    assert (dev.pq_prekey, dev.pq_is_last_resort) == (pq1, False)
    second = await storage.keys.take_bundle(B_ID, None)
    assert second is not None
    assert second.devices[0].prekey == OneTimeKey(4, b"b" * 33)
    assert (second.devices[0].pq_prekey, second.devices[0].pq_is_last_resort) == (LAST, True)
    third = await storage.keys.take_bundle(B_ID, None)
    assert third is not None
    assert third.devices[0].prekey is None
    assert third.devices[0].pq_prekey == LAST
    assert await storage.keys.count_one_time(B_ID, D1) == KeyCounts(0, 0)
    assert await storage.keys.take_bundle(B_ID, DeviceId(2)) is None
    assert await storage.keys.take_bundle(A_ID, None) is None


async def test_one_time_upload_replaces(storage: Storage) -> None:
    await _two_accounts(storage)
    await storage.keys.update_keys(
        A_ID, D1, KeyUpdate(IK, SPK, LAST, (OneTimeKey(1, IK), OneTimeKey(2, IK)))
    )
    await storage.keys.update_keys(A_ID, D1, KeyUpdate(one_time=(OneTimeKey(7, IK),)))
    assert await storage.keys.count_one_time(A_ID, D1) == KeyCounts(1, 0)
    bundle = await storage.keys.take_bundle(A_ID, D1)
    assert bundle is not None
    assert bundle.devices[0].prekey == OneTimeKey(7, IK)


async def test_concurrent_bundle_fetches_never_share_a_key(storage: Storage) -> None:
    await _two_accounts(storage)
    keys = tuple(OneTimeKey(i, bytes([i]) * 33) for i in range(20))
    await storage.keys.update_keys(B_ID, D1, KeyUpdate(IK, SPK, LAST, keys))
    bundles = await asyncio.gather(*(storage.keys.take_bundle(B_ID, None) for _ in range(25)))
    taken = [b.devices[0].prekey for b in bundles if b is not None]
    handed = [k for k in taken if k is not None]
    assert sorted(k.key_id for k in handed) == list(range(20))
    assert taken.count(None) == 5


async def test_enqueue_fetch_ack_in_order(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    woken = await mb.enqueue(
        [_env(B_ID, b"1" * 16), _env(B_ID, b"2" * 16)], now=100, expires_at=FAR, cap=10
    )
    assert woken == [DeviceRef(B_ID, D1)]
    got = await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=101)
    assert [e.seq for e in got] == [1, 2]
    assert (got[0].source, got[0].source_device, got[0].server_timestamp, got[0].body) == (
        A_ID,
        D1,
        100,
        b"ct",
    )
    assert [e.seq for e in await mb.fetch(B_ID, D1, after_seq=1, limit=10, now=101)] == [2]
    assert [e.seq for e in await mb.fetch(B_ID, D1, after_seq=0, limit=1, now=101)] == [1]
    assert await mb.last_seq(B_ID, D1) == 2
    await mb.acknowledge(
        B_ID, D1, [1, 1, 77], now=102, expires_at=FAR, receipt_source_address="instagram:@bob"
    )
    assert [e.seq for e in await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=103)] == [2]
    await mb.enqueue([_env(B_ID, b"3" * 16)], now=104, expires_at=FAR, cap=10)
    assert [e.seq for e in await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=105)] == [2, 3]


async def test_enqueue_reports_the_committed_envelopes(storage: Storage) -> None:
    # what the connections are handed instead of reading the mailbox: exactly what a fetch
    # returns afterwards, seqs included
    await _two_accounts(storage)
    mb = storage.mailboxes
    queued = await mb.enqueue(
        [_env(B_ID, b"1" * 16), _env(B_ID, b"2" * 16), _env(A_ID, b"3" * 16)],
        now=100,
        expires_at=FAR,
        cap=10,
    )
    assert queued == [DeviceRef(B_ID, D1), DeviceRef(A_ID, D1)]
    for ref in queued:
        fetched = await mb.fetch(ref.account_id, ref.device_id, after_seq=0, limit=10, now=101)
        assert list(queued.envelopes[ref]) == fetched
    assert [e.seq for e in queued.envelopes[DeviceRef(B_ID, D1)]] == [1, 2]
    receipts = await mb.acknowledge(
        B_ID, D1, [2], now=102, expires_at=FAR, receipt_source_address="instagram:@bob"
    )
    (receipt,) = receipts.envelopes[DeviceRef(A_ID, D1)]
    assert (receipt.seq, receipt.type, receipt.message_id) == (2, RECEIPT_TYPE, b"2" * 16)
    assert [receipt] == (await mb.fetch(A_ID, D1, after_seq=1, limit=10, now=103))
    again = await mb.enqueue([_env(B_ID, b"1" * 16)], now=104, expires_at=FAR, cap=10)
    assert again == []
    assert not again.envelopes


async def test_counts_commit_with_the_enqueue_and_only_once(storage: Storage) -> None:
    assert storage.metadata is not None
    await _two_accounts(storage)
    mb = storage.mailboxes
    count = SendCount(A_ID, B_ID, ConversationState.REQUEST)
    await mb.enqueue([_env(B_ID, b"1" * 16)], now=10, expires_at=FAR, cap=10, count=count)
    await mb.enqueue([_env(B_ID, b"1" * 16)], now=11, expires_at=FAR, cap=10, count=count)
    with pytest.raises(UnknownDevice):  # refused: nothing enqueued, nothing counted
        await mb.enqueue(
            [_env(B_ID, b"2" * 16), _env(B_ID, b"3" * 16, device=DeviceId(9))],
            now=12,
            expires_at=FAR,
            cap=10,
            count=count,
        )
    mine = await storage.metadata.conversation(A_ID, B_ID)
    theirs = await storage.metadata.conversation(B_ID, A_ID)
    assert mine is not None
    assert theirs is not None
    assert (mine.sent, mine.received, mine.state) == (1, 0, ConversationState.ACCEPTED)
    assert (theirs.sent, theirs.received, theirs.state) == (0, 1, ConversationState.REQUEST)
    assert (theirs.created_at, theirs.last_activity) == (10, 10)


async def test_enqueue_is_idempotent_even_after_ack(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    assert await mb.enqueue([_env(B_ID, b"m" * 16)], now=1, expires_at=FAR, cap=10)
    assert (
        await mb.enqueue(
            [_env(B_ID, b"m" * 16), _env(B_ID, b"m" * 16)], now=2, expires_at=FAR, cap=10
        )
        == []
    )
    assert len(await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=3)) == 1
    await mb.acknowledge(B_ID, D1, [1], now=4, expires_at=FAR, receipt_source_address=None)
    assert await mb.enqueue([_env(B_ID, b"m" * 16)], now=5, expires_at=FAR, cap=10) == []
    assert await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=6) == []


async def test_ack_after_a_lapsed_delivery_record_is_not_refused(storage: Storage) -> None:
    # the delivery record lapsed (not yet swept): the id may be queued again, and its second
    # acknowledgement must still go through (it replaces the lapsed record)
    await _two_accounts(storage)
    mb = storage.mailboxes
    await mb.enqueue([_env(B_ID, b"k" * 16)], now=1, expires_at=100, cap=9)
    await mb.acknowledge(B_ID, D1, [1], now=50, expires_at=FAR, receipt_source_address=None)
    assert await mb.enqueue([_env(B_ID, b"k" * 16)], now=150, expires_at=FAR, cap=9) == [
        DeviceRef(B_ID, D1)
    ]
    await mb.acknowledge(B_ID, D1, [2], now=160, expires_at=FAR, receipt_source_address=None)
    assert await mb.fetch(B_ID, D1, after_seq=0, limit=9, now=170) == []
    assert await mb.enqueue([_env(B_ID, b"k" * 16)], now=180, expires_at=FAR, cap=9) == []


async def test_ack_makes_one_receipt_per_acking_device(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    await mb.enqueue([_env(B_ID, b"m" * 16)], now=1, expires_at=FAR, cap=10)
    woken = await mb.acknowledge(
        B_ID, D1, [1], now=2, expires_at=FAR, receipt_source_address="instagram:@bob"
    )
    assert woken == [DeviceRef(A_ID, D1)]
    (receipt,) = await mb.fetch(A_ID, D1, after_seq=0, limit=10, now=3)
    assert receipt.type == RECEIPT_TYPE
    assert (receipt.source, receipt.source_device, receipt.source_address) == (
        B_ID,
        D1,
        "instagram:@bob",
    )
    assert (receipt.message_id, receipt.timestamp, receipt.body) == (b"m" * 16, 5, b"")
    # acknowledging a receipt makes no receipt
    assert (
        await mb.acknowledge(
            A_ID, D1, [receipt.seq], now=4, expires_at=FAR, receipt_source_address=None
        )
        == []
    )
    assert await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=5) == []


async def test_sealed_sender_gets_no_receipt(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    await mb.enqueue([_env(B_ID, b"m" * 16, source=None)], now=1, expires_at=FAR, cap=10)
    assert (
        await mb.acknowledge(B_ID, D1, [1], now=2, expires_at=FAR, receipt_source_address=None)
        == []
    )
    assert await mb.fetch(A_ID, D1, after_seq=0, limit=10, now=3) == []


async def test_mailbox_cap_refuses_whole_batch(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    await mb.enqueue(
        [_env(B_ID, b"1" * 16), _env(A_ID, b"a" * 16, source=B_ID)], now=1, expires_at=FAR, cap=2
    )
    with pytest.raises(MailboxFull) as info:
        await mb.enqueue(
            [_env(A_ID, b"b" * 16, source=B_ID), _env(B_ID, b"2" * 16), _env(B_ID, b"3" * 16)],
            now=2,
            expires_at=FAR,
            cap=2,
        )
    assert info.value.devices == [DeviceRef(B_ID, D1)]
    assert len(await mb.fetch(A_ID, D1, after_seq=0, limit=10, now=3)) == 1
    assert len(await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=3)) == 1
    # a duplicate never counts against the cap
    await mb.enqueue([_env(B_ID, b"1" * 16), _env(B_ID, b"2" * 16)], now=4, expires_at=FAR, cap=2)


async def test_unknown_recipient_device_refused(storage: Storage) -> None:
    await _two_accounts(storage)
    bad = OutgoingEnvelope(B_ID, DeviceId(5), b"x" * 16, 1, A_ID, D1, None, b"x" * 16, 1, b"")
    with pytest.raises(UnknownDevice):
        await storage.mailboxes.enqueue([_env(B_ID, b"1" * 16), bad], now=1, expires_at=FAR, cap=10)
    assert await storage.mailboxes.fetch(B_ID, D1, after_seq=0, limit=10, now=2) == []


async def test_expiry_is_counted(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    await mb.enqueue([_env(B_ID, b"1" * 16)], now=1, expires_at=100, cap=10)
    await mb.enqueue([_env(B_ID, b"2" * 16)], now=1, expires_at=200, cap=10)
    assert [e.seq for e in await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=150)] == [2]
    assert await mb.expire(150) == 1
    assert await mb.take_expired_count(B_ID, D1) == 1
    assert await mb.take_expired_count(B_ID, D1) == 0
    assert await mb.take_expired_count(A_ID, D1) == 0
    # the delivery record of an acked envelope expires with it, then the id is free again
    await mb.acknowledge(B_ID, D1, [2], now=160, expires_at=FAR, receipt_source_address=None)
    assert await mb.enqueue([_env(B_ID, b"2" * 16)], now=170, expires_at=FAR, cap=10) == []
    await mb.expire(250)
    assert await mb.enqueue([_env(B_ID, b"2" * 16)], now=260, expires_at=FAR, cap=10) == [
        DeviceRef(B_ID, D1)
    ]
    assert await mb.last_seq(B_ID, D1) == 3


async def test_expiry_counts_each_device_and_spares_the_rest(storage: Storage) -> None:
    # several devices and accounts in one sweep: each device is told its own count, an
    # envelope expiring exactly at the sweep's time goes, later ones and their seqs stay
    await _two_accounts(storage)
    d2 = await storage.accounts.add_device(B_ID, _device(10), now=3, max_devices=3)
    mb = storage.mailboxes
    for i, (to, device, expires_at) in enumerate(
        [(B_ID, D1, 100), (B_ID, d2, 150), (B_ID, D1, 150), (B_ID, d2, 151), (A_ID, D1, 90)]
    ):
        key = bytes([i]) * 16
        await mb.enqueue([_env(to, key, device=device)], now=1, expires_at=expires_at, cap=10)
    await mb.acknowledge(B_ID, D1, [1], now=10, expires_at=FAR, receipt_source_address=None)
    assert await mb.expire(99) == 1
    assert await mb.expire(150) == 2
    assert await mb.expire(150) == 0
    assert await mb.take_expired_count(B_ID, D1) == 1
    assert await mb.take_expired_count(B_ID, d2) == 1
    assert await mb.take_expired_count(A_ID, D1) == 1
    assert [e.seq for e in await mb.fetch(B_ID, d2, after_seq=0, limit=9, now=150)] == [2]
    assert await mb.fetch(B_ID, D1, after_seq=0, limit=9, now=150) == []
    # the receipt (expires FAR) survived; new envelopes continue each device's seqs
    assert [e.type for e in await mb.fetch(A_ID, D1, after_seq=0, limit=9, now=150)] == [
        RECEIPT_TYPE
    ]
    await mb.enqueue([_env(B_ID, b"n" * 16)], now=160, expires_at=FAR, cap=10)
    assert await mb.last_seq(B_ID, D1) == 3


async def test_a_second_delivery_of_a_lapsed_id_makes_no_second_receipt(
    storage: Storage,
) -> None:
    # the delivery record lapsed, the id was queued and acknowledged again while the first
    # receipt still waits for the sender: the sender still gets one receipt
    await _two_accounts(storage)
    mb = storage.mailboxes
    await mb.enqueue([_env(B_ID, b"k" * 16)], now=1, expires_at=100, cap=9)
    await mb.acknowledge(B_ID, D1, [1], now=50, expires_at=FAR, receipt_source_address=None)
    await mb.expire(120)
    await mb.enqueue([_env(B_ID, b"k" * 16)], now=150, expires_at=FAR, cap=9)
    await mb.acknowledge(B_ID, D1, [2], now=160, expires_at=FAR, receipt_source_address=None)
    receipts = await mb.fetch(A_ID, D1, after_seq=0, limit=9, now=170)
    assert [(e.type, e.message_id) for e in receipts] == [(RECEIPT_TYPE, b"k" * 16)]


async def test_concurrent_enqueues_get_distinct_seqs(storage: Storage) -> None:
    await _two_accounts(storage)
    mb = storage.mailboxes
    await asyncio.gather(
        *(
            mb.enqueue([_env(B_ID, i.to_bytes(16, "big"))], now=1, expires_at=FAR, cap=1000)
            for i in range(200)
        )
    )
    got = await mb.fetch(B_ID, D1, after_seq=0, limit=500, now=2)
    assert [e.seq for e in got] == list(range(1, 201))
    assert len({e.message_id for e in got}) == 200


async def test_linked_devices_get_fresh_ids(storage: Storage) -> None:
    await _two_accounts(storage)
    accounts = storage.accounts
    d2 = await accounts.add_device(A_ID, _device(30, "tablet"), now=3, max_devices=3)
    d3 = await accounts.add_device(A_ID, _device(31), now=4, max_devices=3)
    assert (d2, d3) == (2, 3)
    with pytest.raises(TooManyDevices):
        await accounts.add_device(A_ID, _device(32), now=5, max_devices=3)
    with pytest.raises(UnknownDevice):
        await accounts.add_device(AccountId(UUID(int=77)), _device(1), now=5, max_devices=3)
    device = await accounts.get_device(A_ID, d2)
    assert device is not None
    assert (device.name, device.registration_id, device.created_at) == ("tablet", 30, 3)
    assert (await accounts.lookup([ALICE]))[ALICE] == (A_ID, [1, 2, 3])
    # removing a device drops its keys and mailbox; its id is not handed out again
    await storage.keys.update_keys(A_ID, d3, KeyUpdate(IK, SPK, LAST, (OneTimeKey(1, IK),)))
    await storage.mailboxes.enqueue(
        [OutgoingEnvelope(A_ID, d3, b"x" * 16, 1, B_ID, D1, None, b"x" * 16, 1, b"")],
        now=5,
        expires_at=FAR,
        cap=10,
    )
    assert await accounts.remove_device(A_ID, d3)
    assert not await accounts.remove_device(A_ID, d3)
    assert not await accounts.remove_device(A_ID, D1)  # never the primary
    assert await storage.keys.count_one_time(A_ID, d3) == KeyCounts(0, 0)
    assert await storage.mailboxes.fetch(A_ID, d3, after_seq=0, limit=10, now=6) == []
    assert await accounts.add_device(A_ID, _device(33), now=7, max_devices=3) == 4
    # re-registration starts over
    await accounts.register(ALICE, new_account_id=A_ID, device=_device(), now=8)
    assert await accounts.add_device(A_ID, _device(34), now=9, max_devices=3) == 2


async def test_one_ack_deletes_a_thousand_envelopes_and_receipts_ack_like_any(
    storage: Storage,
) -> None:
    # an ``ack`` frame may carry 1,000 seqs (docs/protocol.md §7.1): one call deletes them all
    await _two_accounts(storage)
    mb = storage.mailboxes
    keys = [i.to_bytes(16, "big") for i in range(1, 1001)]
    await mb.enqueue([_env(B_ID, k) for k in keys], now=1, expires_at=FAR, cap=2000)
    receipts = await mb.acknowledge(
        B_ID, D1, list(range(1000, 0, -1)), now=2, expires_at=FAR, receipt_source_address=None
    )
    assert await mb.fetch(B_ID, D1, after_seq=0, limit=10, now=3) == []
    sent_back = receipts.envelopes[DeviceRef(A_ID, D1)]
    assert sorted(e.message_id for e in sent_back) == keys
    assert {e.type for e in sent_back} == {RECEIPT_TYPE}
    # acknowledging the receipts makes no receipt; the messages stay deduplicated
    again = await mb.acknowledge(
        A_ID, D1, [e.seq for e in sent_back], now=4, expires_at=FAR, receipt_source_address=None
    )
    assert again == []
    assert await mb.fetch(A_ID, D1, after_seq=0, limit=10, now=5) == []
    assert await mb.enqueue([_env(B_ID, k) for k in keys[:3]], now=6, expires_at=FAR, cap=10) == []


async def test_an_ack_of_messages_and_receipts_together(storage: Storage) -> None:
    # one ``ack`` frame may name messages from several senders, sealed ones and receipts at
    # once: every envelope goes, each unsealed message gets one receipt on its sender device,
    # receipts and sealed messages none, and each message stays deduplicated
    await _two_accounts(storage)
    d2 = await storage.accounts.add_device(A_ID, _device(11), now=3, max_devices=3)
    mb = storage.mailboxes
    await mb.enqueue([_env(A_ID, b"to-a" * 4, source=B_ID)], now=4, expires_at=FAR, cap=10)
    receipt = await mb.acknowledge(
        A_ID, D1, [1], now=5, expires_at=FAR, receipt_source_address=None
    )
    assert receipt.envelopes[DeviceRef(B_ID, D1)][0].seq == 1
    first = _env(B_ID, b"2" * 16)
    other_device = OutgoingEnvelope(B_ID, D1, b"3" * 16, 1, A_ID, d2, None, b"3" * 16, 6, b"c")
    await mb.enqueue(
        [first, _env(B_ID, b"s" * 16, source=None), other_device, _env(B_ID, b"4" * 16)],
        now=6,
        expires_at=FAR,
        cap=10,
    )
    assert [e.seq for e in await mb.fetch(B_ID, D1, after_seq=0, limit=9, now=7)] == [1, 2, 3, 4, 5]
    queued = await mb.acknowledge(
        B_ID, D1, [5, 1, 2, 3, 4, 9], now=8, expires_at=FAR, receipt_source_address="instagram:@bob"
    )
    assert queued == [DeviceRef(A_ID, D1), DeviceRef(A_ID, d2)]
    # which receipt gets which seq is the engine's choice (the ack's order or the seqs')
    to_d1 = queued.envelopes[DeviceRef(A_ID, D1)]
    assert sorted(e.message_id for e in to_d1) == [b"2" * 16, b"4" * 16]
    assert sorted(e.seq for e in to_d1) == [2, 3]  # after the receipt A acknowledged
    assert [(e.seq, e.message_id) for e in queued.envelopes[DeviceRef(A_ID, d2)]] == [
        (1, b"3" * 16)
    ]
    for ref, sent_back in queued.envelopes.items():
        assert sent_back == await mb.fetch(
            ref.account_id, ref.device_id, after_seq=0, limit=9, now=9
        )
        assert {(e.type, e.source, e.source_device) for e in sent_back} == {
            (RECEIPT_TYPE, B_ID, D1)
        }
    assert await mb.fetch(B_ID, D1, after_seq=0, limit=9, now=9) == []
    again = [_env(B_ID, k * 16) for k in (b"2", b"s", b"4")]
    assert await mb.enqueue(again, now=10, expires_at=FAR, cap=10) == []
