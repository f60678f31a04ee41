"""Tests of identity keys, prekey records, bundles and the generation helpers."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import pytest

from kurir.crypto.address import DeviceId
from kurir.crypto.errors import InvalidArgumentError, InvalidPreKeyBundleError, InvalidStateError
from kurir.crypto.kem import KemType
from kurir.crypto.prekeys import (
    MAX_PREKEY_ID,
    IdentityKeyPair,
    KyberPreKeyId,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyId,
    PreKeyRecord,
    SignedPreKeyId,
    SignedPreKeyRecord,
    generate_kyber_pre_key,
    generate_pre_keys,
    generate_registration_id,
    generate_signed_pre_key,
    random_id,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RNG = random.Random(1).randbytes
IDENTITY = IdentityKeyPair.generate(RNG)


def test_identity_key_pair_round_trip_and_signature() -> None:
    assert IdentityKeyPair.deserialize(IDENTITY.serialize()) == IDENTITY
    signature = IDENTITY.sign(b"message", RNG)
    assert IDENTITY.public_key.verify_signature(b"message", signature)


def test_identity_key_pair_refuses_mismatched_halves() -> None:
    other = IdentityKeyPair.generate(RNG)
    forged = IdentityKeyPair(IDENTITY.public_key, other.private_key).serialize()
    with pytest.raises(InvalidStateError):
        IdentityKeyPair.deserialize(forged)
    with pytest.raises(InvalidStateError):
        IdentityKeyPair.deserialize(b"\x0a\x01")


def test_prekey_records_round_trip() -> None:
    (pre_key,) = generate_pre_keys(PreKeyId(10), 1, RNG)
    assert PreKeyRecord.deserialize(pre_key.serialize()) == pre_key
    signed = generate_signed_pre_key(IDENTITY, SignedPreKeyId(3), now=NOW, rng=RNG)
    assert signed.timestamp_ms == int(NOW.timestamp() * 1000)
    assert SignedPreKeyRecord.deserialize(signed.serialize()) == signed
    for kem_type in KemType:
        kyber = generate_kyber_pre_key(
            IDENTITY, KyberPreKeyId(4), now=NOW, rng=RNG, kem_type=kem_type
        )
        assert kyber.key_pair.public_key.kem_type is kem_type
        assert KyberPreKeyRecord.deserialize(kyber.serialize()) == kyber


def test_timestamps_above_32_bits_survive() -> None:
    # regression: the former codec (pure-protobuf 3.1.5) decoded fixed64 from 4 bytes
    signed = generate_signed_pre_key(IDENTITY, SignedPreKeyId(3), now=NOW, rng=RNG)
    assert signed.timestamp_ms > 1 << 32
    assert SignedPreKeyRecord.deserialize(signed.serialize()).timestamp_ms == signed.timestamp_ms


def test_signatures_cover_serialized_public_keys() -> None:
    signed = generate_signed_pre_key(IDENTITY, SignedPreKeyId(3), now=NOW, rng=RNG)
    kyber = generate_kyber_pre_key(IDENTITY, KyberPreKeyId(4), now=NOW, rng=RNG)
    assert IDENTITY.public_key.verify_signature(
        signed.key_pair.public_key.serialize(), signed.signature
    )
    assert IDENTITY.public_key.verify_signature(
        kyber.key_pair.public_key.serialize(), kyber.signature
    )


def test_corrupt_records_raise_invalid_state() -> None:
    for parse in (
        PreKeyRecord.deserialize,
        SignedPreKeyRecord.deserialize,
        KyberPreKeyRecord.deserialize,
    ):
        with pytest.raises(InvalidStateError):
            parse(b"\x1a\x05abc")


def test_prekey_ids_wrap_below_2_24() -> None:
    keys = generate_pre_keys(PreKeyId(MAX_PREKEY_ID - 1), 3, RNG)
    assert [k.id for k in keys] == [MAX_PREKEY_ID - 1, MAX_PREKEY_ID, 1]
    assert 1 <= random_id(RNG) < MAX_PREKEY_ID
    with pytest.raises(InvalidArgumentError):
        generate_pre_keys(PreKeyId(1), -1, RNG)


def test_registration_id_range() -> None:
    ids = {generate_registration_id(RNG) for _ in range(200)}
    assert min(ids) >= 1
    assert max(ids) <= 16380


def test_naive_time_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        generate_signed_pre_key(IDENTITY, SignedPreKeyId(1), now=datetime(2026, 1, 1), rng=RNG)


def bundle() -> PreKeyBundle:
    (pre_key,) = generate_pre_keys(PreKeyId(1), 1, RNG)
    signed = generate_signed_pre_key(IDENTITY, SignedPreKeyId(2), now=NOW, rng=RNG)
    kyber = generate_kyber_pre_key(IDENTITY, KyberPreKeyId(3), now=NOW, rng=RNG)
    return PreKeyBundle(
        registration_id=42,
        device_id=DeviceId(1),
        pre_key_id=pre_key.id,
        pre_key=pre_key.key_pair.public_key,
        signed_pre_key_id=signed.id,
        signed_pre_key=signed.key_pair.public_key,
        signed_pre_key_signature=signed.signature,
        identity_key=IDENTITY.public_key,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key=kyber.key_pair.public_key,
        kyber_pre_key_signature=kyber.signature,
    )


def test_bundle_verifies() -> None:
    bundle().verify_signatures()


def test_bundle_without_kem_prekey_is_refused() -> None:
    good = bundle()
    with pytest.raises(InvalidPreKeyBundleError, match="KEM"):
        PreKeyBundle(
            registration_id=good.registration_id,
            device_id=good.device_id,
            pre_key_id=good.pre_key_id,
            pre_key=good.pre_key,
            signed_pre_key_id=good.signed_pre_key_id,
            signed_pre_key=good.signed_pre_key,
            signed_pre_key_signature=good.signed_pre_key_signature,
            identity_key=good.identity_key,
        )
    with pytest.raises(InvalidPreKeyBundleError):
        dataclasses.replace(good, kyber_pre_key=None)


def test_bundle_refuses_half_a_one_time_prekey() -> None:
    with pytest.raises(InvalidPreKeyBundleError):
        dataclasses.replace(bundle(), pre_key=None)


def test_bundle_with_bad_signatures_is_refused() -> None:
    good = bundle()
    other = IdentityKeyPair.generate(RNG)
    bad_signed = dataclasses.replace(
        good, signed_pre_key_signature=other.sign(good.signed_pre_key.serialize(), RNG)
    )
    with pytest.raises(InvalidPreKeyBundleError, match="signed prekey"):
        bad_signed.verify_signatures()
    bad_kem = dataclasses.replace(good, kyber_pre_key_signature=good.signed_pre_key_signature)
    with pytest.raises(InvalidPreKeyBundleError, match="KEM"):
        bad_kem.verify_signatures()
