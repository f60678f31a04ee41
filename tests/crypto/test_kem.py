"""Tests of KEM keys: libsignal's encodings, ML-KEM-1024 (pyca) and legacy Kyber1024 (kyber-py).

Known answers: Kyber1024 key pairs and encapsulations recorded from libsignal 0.90.0
(``tests/vectors/libsignal-kyber1024.json``), decapsulated here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM1024PrivateKey
from kyber_py.ml_kem import ML_KEM_1024

from kurir.crypto.errors import BadKeyTypeError, InvalidKeyError, InvalidMessageError
from kurir.crypto.kem import (
    CIPHERTEXT_LENGTH,
    PUBLIC_KEY_LENGTH,
    KemKeyPair,
    KemPublicKey,
    KemSecretKey,
    KemType,
)

KYBER_VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "libsignal-kyber1024.json").read_text()
)


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


@pytest.mark.parametrize("case", KYBER_VECTORS["cases"], ids=lambda c: c["public"][:10])
def test_libsignal_kyber1024_decapsulation(case: dict[str, Any]) -> None:
    public = KemPublicKey.deserialize(bytes.fromhex(case["public"]))
    secret = KemSecretKey.deserialize(bytes.fromhex(case["secret"]))
    assert public.kem_type is secret.kem_type is KemType.KYBER1024
    assert public.serialize() == bytes.fromhex(case["public"])
    assert secret.serialize() == bytes.fromhex(case["secret"])
    assert secret.public_key() == public
    shared = secret.decapsulate(bytes.fromhex(case["ciphertext"]))
    assert shared == bytes.fromhex(case["shared_secret"])


@pytest.mark.parametrize("case", KYBER_VECTORS["cases"][:2], ids=lambda c: c["public"][:10])
def test_kyber1024_encapsulation_to_libsignal_key_decapsulates(case: dict[str, Any]) -> None:
    public = KemPublicKey.deserialize(bytes.fromhex(case["public"]))
    secret = KemSecretKey.deserialize(bytes.fromhex(case["secret"]))
    shared, ciphertext = public.encapsulate(rng(1).randbytes)
    assert ciphertext[0] == 0x08
    assert len(ciphertext) == 1 + CIPHERTEXT_LENGTH
    assert secret.decapsulate(ciphertext) == shared


@pytest.mark.parametrize("kem_type", list(KemType))
def test_generate_encapsulate_decapsulate(kem_type: KemType) -> None:
    pair = KemKeyPair.generate(rng(2).randbytes, kem_type)
    assert pair.public_key.serialize()[0] == kem_type
    assert len(pair.public_key.serialize()) == 1 + PUBLIC_KEY_LENGTH
    shared, ciphertext = pair.public_key.encapsulate(rng(3).randbytes)
    assert len(shared) == 32
    assert ciphertext[0] == kem_type
    assert pair.secret_key.decapsulate(ciphertext) == shared
    again = KemSecretKey.deserialize(pair.secret_key.serialize())
    assert again.decapsulate(ciphertext) == shared
    assert KemKeyPair.from_secret_key(again) == pair


def test_generation_is_deterministic_in_the_rng() -> None:
    for kem_type in KemType:
        first = KemKeyPair.generate(rng(4).randbytes, kem_type)
        second = KemKeyPair.generate(rng(4).randbytes, kem_type)
        assert first.public_key == second.public_key


def test_ml_kem_seed_matches_pyca() -> None:
    seed = bytes(range(64))
    pair = KemKeyPair.from_secret_key(KemSecretKey(KemType.MLKEM1024, seed))
    expected = MLKEM1024PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
    assert pair.public_key.key == expected


def test_kyber_encapsulation_uses_injected_randomness() -> None:
    public = KemKeyPair.generate(rng(5).randbytes, KemType.KYBER1024).public_key
    assert public.encapsulate(rng(6).randbytes) == public.encapsulate(rng(6).randbytes)
    assert public.encapsulate(rng(6).randbytes) != public.encapsulate(rng(7).randbytes)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InvalidKeyError),
        (b"\x07" + bytes(PUBLIC_KEY_LENGTH), BadKeyTypeError),
        (b"\x08" + bytes(PUBLIC_KEY_LENGTH - 1), InvalidKeyError),
        (b"\x0a" + bytes(PUBLIC_KEY_LENGTH + 1), InvalidKeyError),
    ],
)
def test_public_key_rejects_bad_encodings(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        KemPublicKey.deserialize(data)


def test_secret_key_rejects_bad_encodings() -> None:
    with pytest.raises(InvalidKeyError):
        KemSecretKey.deserialize(b"")
    with pytest.raises(BadKeyTypeError):
        KemSecretKey.deserialize(b"\x01" + bytes(64))
    with pytest.raises(InvalidKeyError):
        KemSecretKey.deserialize(b"\x0a" + bytes(63))
    with pytest.raises(InvalidKeyError):
        KemSecretKey.deserialize(b"\x08" + bytes(64))


def test_decapsulation_refuses_wrong_type_and_length() -> None:
    pair = KemKeyPair.generate(rng(8).randbytes, KemType.MLKEM1024)
    _, ciphertext = pair.public_key.encapsulate(rng(9).randbytes)
    with pytest.raises(InvalidMessageError):
        pair.secret_key.decapsulate(b"")
    with pytest.raises(InvalidMessageError):
        pair.secret_key.decapsulate(b"\x08" + ciphertext[1:])
    with pytest.raises(InvalidMessageError):
        pair.secret_key.decapsulate(ciphertext[:-1])


def test_forged_ciphertext_gives_an_unrelated_secret() -> None:
    for kem_type in KemType:
        pair = KemKeyPair.generate(rng(10).randbytes, kem_type)
        shared, ciphertext = pair.public_key.encapsulate(rng(11).randbytes)
        forged = bytearray(ciphertext)
        forged[100] ^= 1
        assert pair.secret_key.decapsulate(bytes(forged)) != shared


def test_key_pair_refuses_mismatched_halves() -> None:
    a = KemKeyPair.generate(rng(12).randbytes, KemType.MLKEM1024)
    b = KemKeyPair.generate(rng(13).randbytes, KemType.MLKEM1024)
    c = KemKeyPair.generate(rng(14).randbytes, KemType.KYBER1024)
    with pytest.raises(InvalidKeyError):
        KemKeyPair(a.public_key, b.secret_key)
    with pytest.raises(InvalidKeyError):
        KemKeyPair(c.public_key, a.secret_key)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ml_kem_agrees_with_an_independent_implementation(seed: int) -> None:
    """pyca (OpenSSL) against kyber-py's pure-Python FIPS 203, both ways."""
    key_seed = random.Random(seed).randbytes(64)
    ek, dk = ML_KEM_1024.key_derive(key_seed)
    pair = KemKeyPair.from_secret_key(KemSecretKey(KemType.MLKEM1024, key_seed))
    assert pair.public_key.key == ek
    shared, ciphertext = pair.public_key.encapsulate(random.Random(seed).randbytes)
    assert ML_KEM_1024.decaps(dk, ciphertext[1:]) == shared
    their_shared, their_ciphertext = ML_KEM_1024.encaps(ek)
    assert pair.secret_key.decapsulate(b"\x0a" + their_ciphertext) == their_shared
