"""The GroupStore contract tests of tests/server/test_groups_store.py, unchanged, on PostgreSQL.

Every ``test_*`` function of that module is collected here again with a ``storage`` fixture
that opens the PostgreSQL engine on a fresh schema and registers the same accounts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kurir.server.storage.errors import MailboxFull
from kurir.server.storage.groups import UnknownGroup
from kurir.server.storage.pg_testing import fresh_schema
from kurir.server.storage.postgres import PostgresEngine
from kurir.server.storage.protocols import Storage
from kurir.server.storage.records import OutgoingEnvelope
from kurir.server.types import DeviceId, DeviceRef
from kurir.wire.address import Address
from server import test_groups_store as _contract


@pytest.fixture
async def storage(postgres_database: str) -> AsyncIterator[Storage]:
    """The PostgreSQL engine's stores with the contract's accounts registered."""
    engine = await PostgresEngine.open(await fresh_schema(postgres_database))
    for i, account_id in enumerate(_contract.IDS):
        await engine.storage.accounts.register(
            Address("messenger", str(1000 + i)),
            new_account_id=account_id,
            device=_contract.DEVICE,
            now=1,
        )
    try:
        yield engine.storage
    finally:
        await engine.close()


globals().update({name: fn for name, fn in vars(_contract).items() if name.startswith("test_")})


async def test_fan_out_enqueues_to_every_member_device_but_the_sender(storage: Storage) -> None:
    groups = storage.groups
    assert groups is not None
    a, b, c, d, _ = _contract.IDS
    await groups.create(_contract.G, name="g", avatar=None, creator=a, members=[b, c], now=2, cap=9)
    b2 = await storage.accounts.add_device(b, _contract.DEVICE, now=3, max_devices=5)
    await storage.accounts.add_device(a, _contract.DEVICE, now=3, max_devices=5)
    envelope = OutgoingEnvelope(
        d, DeviceId(7), b"g" * 16, 1, None, None, None, b"g" * 16, 4, b"sender-key ct"
    )
    sender = DeviceRef(a, DeviceId(1))
    woken = await groups.fan_out(_contract.G, sender, envelope, now=5, expires_at=10**15, cap=9)
    expected = [
        DeviceRef(a, DeviceId(2)),
        DeviceRef(b, DeviceId(1)),
        DeviceRef(b, b2),
        DeviceRef(c, DeviceId(1)),
    ]
    assert woken == expected  # in join order, the sender's other device included
    for ref in expected:
        (got,) = await storage.mailboxes.fetch(
            ref.account_id, ref.device_id, after_seq=0, limit=9, now=6
        )
        assert got.body == b"sender-key ct"
    assert await storage.mailboxes.fetch(a, DeviceId(1), after_seq=0, limit=9, now=6) == []
    # idempotent on the dedupe key, and refused to non-members without enqueueing anything
    assert (
        await groups.fan_out(_contract.G, sender, envelope, now=7, expires_at=10**15, cap=9) == []
    )
    with pytest.raises(UnknownGroup):
        await groups.fan_out(
            _contract.G, DeviceRef(d, DeviceId(1)), envelope, now=8, expires_at=10**15, cap=9
        )
    assert await storage.mailboxes.fetch(d, DeviceId(1), after_seq=0, limit=9, now=9) == []
    # a full mailbox refuses the whole fan-out
    other = envelope._replace(dedupe_key=b"h" * 16)
    with pytest.raises(MailboxFull):
        await groups.fan_out(_contract.G, sender, other, now=10, expires_at=10**15, cap=1)
    assert len(await storage.mailboxes.fetch(c, DeviceId(1), after_seq=0, limit=9, now=11)) == 1
