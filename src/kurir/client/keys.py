"""This device's prekey policy: what to generate, what to publish, when to refill.

Owns: building the `KeyUpload` bodies of ``PUT /v1/keys`` from freshly generated prekeys
(which it stores locally first), and the refill rule. Generation itself is
`kurir.crypto.prekeys`; the HTTP call is the `Client`'s. It is synchronous: keys are made and
stored before anything goes on the network, so a key the server hands out always exists here.

Policy (as Signal's clients): one signed EC prekey and one signed ML-KEM-1024 last-resort
prekey, and batches of `BATCH` one-time EC and one-time ML-KEM-1024 prekeys; when the server
holds fewer than `REFILL_BELOW` of a kind, a new batch of that kind is uploaded (replacing the
server's list of that kind). The signed prekey and the last-resort prekey are replaced once
they are `ROTATE_AFTER_MS` old. A replaced key is kept for `KEEP_RETIRED_MS` (a message naming
it may still be on its way: the server keeps envelopes up to 30 days) and then deleted, so no
key table only grows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from kurir.client.store import ClientStore, PreKeyKind
from kurir.crypto.curve import Rng
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    KyberPreKeyRecord,
    PreKeyId,
    SignedPreKeyId,
    generate_kyber_pre_key,
    generate_pre_keys,
    generate_signed_pre_key,
)
from kurir.wire import api
from kurir.wire.limits import MAX_ONE_TIME_PREKEYS_PER_UPLOAD

__all__ = [
    "BATCH",
    "KEEP_RETIRED_MS",
    "REFILL_BELOW",
    "ROTATE_AFTER_MS",
    "initial_upload",
    "refill_upload",
]

BATCH: Final = MAX_ONE_TIME_PREKEYS_PER_UPLOAD
"""One-time prekeys generated per batch (of each kind)."""
REFILL_BELOW: Final = 20
"""A kind is refilled when the server holds fewer one-time prekeys of it than this."""
DAY_MS: Final = 24 * 60 * 60 * 1000
ROTATE_AFTER_MS: Final = 7 * DAY_MS
"""Age at which the signed prekey and the last-resort KEM prekey are replaced."""
KEEP_RETIRED_MS: Final = 31 * DAY_MS
"""How long a replaced prekey is kept for messages already on their way."""


def initial_upload(
    store: ClientStore, identity: IdentityKeyPair, *, now_ms: int, rng: Rng
) -> api.KeyUpload:
    """Generates and stores every prekey of a new device; returns the first upload.

    Call inside a store transaction; upload the result before announcing the device.
    """
    return api.KeyUpload(
        identity_key=identity.public_key.serialize(),
        signed_prekey=_signed(store, identity, now_ms=now_ms, rng=rng),
        pq_last_resort_prekey=_last_resort(store, identity, now_ms=now_ms, rng=rng),
        one_time_prekeys=_ec_batch(store, rng),
        pq_one_time_prekeys=_pq_batch(store, identity, now_ms=now_ms, rng=rng),
    )


def refill_upload(
    store: ClientStore,
    identity: IdentityKeyPair,
    counts: api.KeyCounts,
    *,
    now_ms: int,
    rng: Rng,
) -> api.KeyUpload | None:
    """Returns the upload that refills what runs low on the server and rotates what is old, or
    None if nothing needs it. Also deletes keys retired more than `KEEP_RETIRED_MS` ago.

    Call inside a store transaction.
    """
    store.prune_retired(now_ms - KEEP_RETIRED_MS)
    ec = _ec_batch(store, rng) if counts.ec < REFILL_BELOW else None
    pq = _pq_batch(store, identity, now_ms=now_ms, rng=rng) if counts.pq < REFILL_BELOW else None
    signed = (
        _signed(store, identity, now_ms=now_ms, rng=rng)
        if _old(store, PreKeyKind.SIGNED, now_ms)
        else None
    )
    last_resort = (
        _last_resort(store, identity, now_ms=now_ms, rng=rng)
        if _old(store, PreKeyKind.PQ_LAST_RESORT, now_ms)
        else None
    )
    if ec is None and pq is None and signed is None and last_resort is None:
        return None
    return api.KeyUpload(
        signed_prekey=signed,
        pq_last_resort_prekey=last_resort,
        one_time_prekeys=ec,
        pq_one_time_prekeys=pq,
    )


def _old(store: ClientStore, kind: PreKeyKind, now_ms: int) -> bool:
    created = store.newest_created(kind)
    return created is None or now_ms - created >= ROTATE_AFTER_MS


def _signed(
    store: ClientStore, identity: IdentityKeyPair, *, now_ms: int, rng: Rng
) -> api.SignedPreKey:
    store.retire(PreKeyKind.SIGNED)
    key_id = SignedPreKeyId(store.next_id("signed_prekey"))
    signed = generate_signed_pre_key(identity, key_id, now=_datetime(now_ms), rng=rng)
    store.put_signed_prekey(signed.id, signed.serialize())
    return api.SignedPreKey(
        key_id=signed.id,
        public_key=signed.key_pair.public_key.serialize(),
        signature=signed.signature,
    )


def _last_resort(
    store: ClientStore, identity: IdentityKeyPair, *, now_ms: int, rng: Rng
) -> api.KemPreKey:
    store.retire(PreKeyKind.PQ_LAST_RESORT)
    key_id = KyberPreKeyId(store.next_id("kyber_prekey"))
    record = generate_kyber_pre_key(identity, key_id, now=_datetime(now_ms), rng=rng)
    store.put_kyber_prekey(record.id, record.serialize(), last_resort=True)
    return _kem_key(record)


def _ec_batch(store: ClientStore, rng: Rng) -> list[api.PreKey]:
    store.retire(PreKeyKind.ONE_TIME)  # the upload replaces the server's list
    start = PreKeyId(store.next_id("prekey", BATCH))
    records = generate_pre_keys(start, BATCH, rng)
    for record in records:
        store.put_prekey(record.id, record.serialize())
    return [api.PreKey(key_id=r.id, public_key=r.key_pair.public_key.serialize()) for r in records]


def _pq_batch(
    store: ClientStore, identity: IdentityKeyPair, *, now_ms: int, rng: Rng
) -> list[api.KemPreKey]:
    store.retire(PreKeyKind.PQ_ONE_TIME)  # the upload replaces the server's list
    start = store.next_id("kyber_prekey", BATCH)
    now = _datetime(now_ms)
    keys = []
    for i in range(BATCH):
        record = generate_kyber_pre_key(identity, KyberPreKeyId(start + i), now=now, rng=rng)
        store.put_kyber_prekey(record.id, record.serialize(), last_resort=False)
        keys.append(_kem_key(record))
    return keys


def _kem_key(record: KyberPreKeyRecord) -> api.KemPreKey:
    return api.KemPreKey(
        key_id=record.id,
        public_key=record.key_pair.public_key.serialize(),
        signature=record.signature,
    )


def _datetime(now_ms: int) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC)
