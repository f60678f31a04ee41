"""Conformance of the in-memory stores to the store Protocols' documented contract."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair
from kurir.crypto.errors import InvalidPreKeyMessageError
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    PreKeyId,
    SignedPreKeyId,
    generate_kyber_pre_key,
    generate_pre_keys,
    generate_signed_pre_key,
)
from kurir.crypto.session import SessionRecord
from kurir.crypto.stores import (
    Direction,
    IdentityKeyStore,
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)

RNG = random.Random(2).randbytes
NOW = datetime(2026, 11, 24, tzinfo=UTC)
IDENTITY = IdentityKeyPair.generate(RNG)
PEER = ProtocolAddress("peer", DeviceId(2))


def test_identity_store_trusts_on_first_use() -> None:
    store: IdentityKeyStore = InMemoryIdentityKeyStore(IDENTITY, 5)
    assert store.get_identity_key_pair() == IDENTITY
    assert store.get_local_registration_id() == 5
    first = KeyPair.generate(RNG).public_key
    second = KeyPair.generate(RNG).public_key
    assert store.get_identity(PEER) is None
    assert store.is_trusted_identity(PEER, first, Direction.SENDING)
    assert store.save_identity(PEER, first) is False
    assert store.save_identity(PEER, first) is False
    assert store.is_trusted_identity(PEER, first, Direction.RECEIVING)
    assert not store.is_trusted_identity(PEER, second, Direction.RECEIVING)
    assert store.save_identity(PEER, second) is True
    assert store.get_identity(PEER) == second


def test_prekey_store() -> None:
    store: PreKeyStore = InMemoryPreKeyStore()
    (record,) = generate_pre_keys(PreKeyId(3), 1, RNG)
    assert store.get_pre_key(record.id) is None
    store.save_pre_key(record.id, record)
    assert store.get_pre_key(record.id) == record
    store.remove_pre_key(record.id)
    store.remove_pre_key(record.id)
    assert store.get_pre_key(record.id) is None


def test_signed_prekey_store() -> None:
    store: SignedPreKeyStore = InMemorySignedPreKeyStore()
    record = generate_signed_pre_key(IDENTITY, SignedPreKeyId(4), now=NOW, rng=RNG)
    assert store.get_signed_pre_key(record.id) is None
    store.save_signed_pre_key(record.id, record)
    assert store.get_signed_pre_key(record.id) == record


def test_kyber_store_deletes_one_time_keys_and_guards_last_resort() -> None:
    store: KyberPreKeyStore = InMemoryKyberPreKeyStore()
    one_time = generate_kyber_pre_key(IDENTITY, KyberPreKeyId(1), now=NOW, rng=RNG)
    last_resort = generate_kyber_pre_key(IDENTITY, KyberPreKeyId(2), now=NOW, rng=RNG)
    store.save_kyber_pre_key(one_time.id, one_time, last_resort=False)
    store.save_kyber_pre_key(last_resort.id, last_resort, last_resort=True)
    base = KeyPair.generate(RNG).public_key
    store.mark_kyber_pre_key_used(one_time.id, SignedPreKeyId(1), base)
    assert store.get_kyber_pre_key(one_time.id) is None
    store.mark_kyber_pre_key_used(last_resort.id, SignedPreKeyId(1), base)
    assert store.get_kyber_pre_key(last_resort.id) == last_resort
    store.mark_kyber_pre_key_used(
        last_resort.id, SignedPreKeyId(1), KeyPair.generate(RNG).public_key
    )
    with pytest.raises(InvalidPreKeyMessageError):
        store.mark_kyber_pre_key_used(last_resort.id, SignedPreKeyId(1), base)


def test_session_store_returns_fresh_values() -> None:
    store: SessionStore = InMemorySessionStore()
    assert store.load_session(PEER) is None
    record = SessionRecord()
    store.store_session(PEER, record)
    loaded = store.load_session(PEER)
    assert loaded == record
    assert loaded is not record
