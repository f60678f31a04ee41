"""Tests of kurir.client.keys: prekeys are stored before they are published, and verify."""

from __future__ import annotations

import random

import msgspec

from kurir.client.keys import (
    BATCH,
    KEEP_RETIRED_MS,
    REFILL_BELOW,
    ROTATE_AFTER_MS,
    initial_upload,
    refill_upload,
)
from kurir.client.store import ClientStore
from kurir.crypto.curve import PublicKey
from kurir.crypto.kem import KemPublicKey
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from kurir.wire import api

NOW = 1_700_000_000_000


def _clock() -> int:
    return NOW


def test_initial_upload_is_valid_stored_and_signed() -> None:
    rng = random.Random(1).randbytes
    store = ClientStore.in_memory(_clock)
    identity = IdentityKeyPair.generate(rng)
    with store.transaction():
        upload = initial_upload(store, identity, now_ms=NOW, rng=rng)
    # it survives the wire codec (lengths and ranges checked by kurir.wire.api)
    again = api.decode_json(api.encode_json(upload), api.KeyUpload)
    assert again == upload
    assert upload.identity_key == identity.public_key.serialize()
    assert upload.signed_prekey is not None
    assert upload.pq_last_resort_prekey is not None
    assert upload.one_time_prekeys is not None
    assert upload.pq_one_time_prekeys is not None
    assert len(upload.one_time_prekeys) == len(upload.pq_one_time_prekeys) == BATCH

    spk = upload.signed_prekey
    assert identity.public_key.verify_signature(spk.public_key, spk.signature)
    stored = store.signed_prekey(spk.key_id)
    assert stored is not None
    assert SignedPreKeyRecord.deserialize(stored).key_pair.public_key.serialize() == spk.public_key

    for pq in [upload.pq_last_resort_prekey, *upload.pq_one_time_prekeys]:
        assert identity.public_key.verify_signature(pq.public_key, pq.signature)
        KemPublicKey.deserialize(pq.public_key)  # a real ML-KEM key
        raw = store.kyber_prekey(pq.key_id)
        assert raw is not None
        record = KyberPreKeyRecord.deserialize(raw)
        assert record.key_pair.public_key.serialize() == pq.public_key

    for ec in upload.one_time_prekeys:
        PublicKey.deserialize(ec.public_key)
        raw = store.prekey(ec.key_id)
        assert raw is not None
        assert PreKeyRecord.deserialize(raw).key_pair.public_key.serialize() == ec.public_key

    ids = [k.key_id for k in upload.pq_one_time_prekeys] + [upload.pq_last_resort_prekey.key_id]
    assert len(set(ids)) == len(ids)
    assert store.prekey_counts() == (BATCH, BATCH)


def test_refill_only_what_runs_low() -> None:
    rng = random.Random(2).randbytes
    store = ClientStore.in_memory(_clock)
    identity = IdentityKeyPair.generate(rng)
    with store.transaction():
        first = initial_upload(store, identity, now_ms=NOW, rng=rng)
    assert (
        refill_upload(store, identity, api.KeyCounts(ec=BATCH, pq=BATCH), now_ms=NOW, rng=rng)
        is None
    )
    upload = refill_upload(
        store, identity, api.KeyCounts(ec=REFILL_BELOW - 1, pq=BATCH), now_ms=NOW, rng=rng
    )
    assert upload is not None
    assert upload.pq_one_time_prekeys is None
    assert upload.one_time_prekeys is not None
    assert first.one_time_prekeys is not None
    old_ids = {k.key_id for k in first.one_time_prekeys}
    assert old_ids.isdisjoint(k.key_id for k in upload.one_time_prekeys)
    body = msgspec.json.decode(api.encode_json(upload))
    assert set(body) == {"one_time_prekeys"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def test_old_keys_are_rotated_and_retired_ones_deleted_later() -> None:
    rng = random.Random(3).randbytes
    clock = Clock()
    store = ClientStore.in_memory(clock)
    identity = IdentityKeyPair.generate(rng)
    with store.transaction():
        first = initial_upload(store, identity, now_ms=clock.now, rng=rng)
    assert first.signed_prekey is not None
    assert first.pq_last_resort_prekey is not None
    assert first.one_time_prekeys is not None
    full = api.KeyCounts(ec=BATCH, pq=BATCH)

    clock.now += ROTATE_AFTER_MS
    upload = refill_upload(store, identity, full, now_ms=clock.now, rng=rng)
    assert upload is not None
    assert upload.one_time_prekeys is None
    assert upload.signed_prekey is not None
    assert upload.pq_last_resort_prekey is not None
    assert upload.signed_prekey.key_id != first.signed_prekey.key_id
    # the replaced keys still serve messages already on their way
    assert store.signed_prekey(first.signed_prekey.key_id) is not None
    assert store.kyber_prekey(first.pq_last_resort_prekey.key_id) is not None
    assert refill_upload(store, identity, full, now_ms=clock.now, rng=rng) is None

    low = api.KeyCounts(ec=0, pq=BATCH)
    refill_upload(store, identity, low, now_ms=clock.now, rng=rng)  # replaces the EC list
    old_ec = first.one_time_prekeys[0].key_id
    assert store.prekey(old_ec) is not None

    clock.now += KEEP_RETIRED_MS + 1
    refill_upload(store, identity, full, now_ms=clock.now, rng=rng)
    assert store.signed_prekey(first.signed_prekey.key_id) is None
    assert store.kyber_prekey(first.pq_last_resort_prekey.key_id) is None
    assert store.prekey(old_ec) is None
    assert store.signed_prekey(upload.signed_prekey.key_id) is not None  # rotated again, kept
    assert store.prekey_counts() == (BATCH, BATCH)
