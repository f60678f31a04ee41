"""Tests of Curve25519 keys, X25519 agreement and XEdDSA (libsignal's variant)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey
from kurir.crypto.errors import BadKeyTypeError, InvalidKeyError

# RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_rfc7748_agreement() -> None:
    alice = PrivateKey.deserialize(ALICE_PRIVATE)
    bob = PrivateKey.deserialize(BOB_PRIVATE)
    assert alice.public_key().key == ALICE_PUBLIC
    assert bob.public_key().key == BOB_PUBLIC
    assert alice.agree(bob.public_key()) == SHARED
    assert bob.agree(alice.public_key()) == SHARED


def test_public_key_encoding_round_trip() -> None:
    key = PublicKey(ALICE_PUBLIC)
    assert key.serialize() == b"\x05" + ALICE_PUBLIC
    assert PublicKey.deserialize(key.serialize()) == key


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InvalidKeyError),
        (b"\x06" + ALICE_PUBLIC, BadKeyTypeError),
        (b"\x05" + ALICE_PUBLIC[:31], InvalidKeyError),
        (b"\x05" + ALICE_PUBLIC + b"\x00", InvalidKeyError),
    ],
)
def test_public_key_rejects_bad_encodings(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        PublicKey.deserialize(data)


def test_private_key_is_clamped_on_load() -> None:
    key = PrivateKey.deserialize(b"\xff" * 32)
    assert key.serialize()[0] & 7 == 0
    assert key.serialize()[31] & 0xC0 == 0x40


def test_agreement_with_small_order_point_is_refused() -> None:
    with pytest.raises(InvalidKeyError):
        PrivateKey.deserialize(ALICE_PRIVATE).agree(PublicKey(bytes(32)))


@given(seed=st.integers(0, 2**32), message=st.binary(max_size=200))
def test_signatures_verify_and_tampering_fails(seed: int, message: bytes) -> None:
    rng = random.Random(seed).randbytes
    pair = KeyPair.generate(rng)
    signature = pair.calculate_signature(message, rng)
    assert pair.public_key.verify_signature(message, signature)
    assert not pair.public_key.verify_signature(message + b"x", signature)
    for index in (0, 33, 63):
        forged = bytearray(signature)
        forged[index] ^= 0x01
        assert not pair.public_key.verify_signature(message, bytes(forged))
    other = KeyPair.generate(rng)
    assert not other.public_key.verify_signature(message, signature)


def test_signature_of_wrong_length_is_invalid() -> None:
    pair = KeyPair.generate(random.Random(1).randbytes)
    assert not pair.public_key.verify_signature(b"m", b"\x00" * 63)
