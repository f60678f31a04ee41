"""Conformance suite for `SenderKeyStore` engines (the in-memory reference for now).

A new engine (the client's SQLite store) joins by adding a factory to ``ENGINES``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

import pytest

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyStore,
    create_sender_key_distribution_message,
    group_encrypt,
)

ENGINES: dict[str, Callable[[], SenderKeyStore]] = {"memory": InMemorySenderKeyStore}

ALICE = ProtocolAddress("alice", DeviceId(1))
ALICE_2 = ProtocolAddress("alice", DeviceId(2))
G1, G2 = uuid.UUID(int=1), uuid.UUID(int=2)


@pytest.fixture(params=sorted(ENGINES))
def store(request: pytest.FixtureRequest) -> SenderKeyStore:
    factory: Callable[[], SenderKeyStore] = ENGINES[request.param]
    return factory()


def test_missing_record_is_none(store: SenderKeyStore) -> None:
    assert store.load_sender_key(ALICE, G1) is None


def test_records_are_keyed_by_device_and_distribution(store: SenderKeyStore) -> None:
    rng = random.Random(1).randbytes
    first = create_sender_key_distribution_message(ALICE, G1, store, rng)
    second = create_sender_key_distribution_message(ALICE, G2, store, rng)
    third = create_sender_key_distribution_message(ALICE_2, G1, store, rng)
    assert len({first.chain_id, second.chain_id, third.chain_id}) == 3
    for address, group, skdm in ((ALICE, G1, first), (ALICE, G2, second), (ALICE_2, G1, third)):
        record = store.load_sender_key(address, group)
        assert record is not None
        assert record.states[0].chain_id == skdm.chain_id


def test_store_replaces_and_round_trips(store: SenderKeyStore) -> None:
    rng = random.Random(2).randbytes
    create_sender_key_distribution_message(ALICE, G1, store, rng)
    before = store.load_sender_key(ALICE, G1)
    group_encrypt(store, ALICE, G1, b"advance", rng)
    after = store.load_sender_key(ALICE, G1)
    assert before is not None
    assert after is not None
    assert after.states[0].chain_key.iteration == before.states[0].chain_key.iteration + 1
    assert after.serialize() != before.serialize()
    store.store_sender_key(ALICE, G1, before)
    restored = store.load_sender_key(ALICE, G1)
    assert restored is not None
    assert restored.serialize() == before.serialize()
