"""Tests of the Double Ratchet's primitives: HKDF, libsignal's chain and message keys, AES-CBC."""

from __future__ import annotations

import pytest

from kurir.crypto.errors import InvalidArgumentError, InvalidMessageError
from kurir.crypto.ratchet import (
    MessageKeys,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    hkdf_sha256,
    message_key_seed,
    next_chain_key,
)
from kurir.crypto.session import ChainKey

# RFC 5869 appendix A, test cases 1-3: (ikm, salt, info, length, okm)
RFC5869 = [
    (
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c6"
        "5e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b" * 22,
        "",
        "",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869)
def test_hkdf_rfc5869(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    result = hkdf_sha256(
        bytes.fromhex(ikm),
        salt=bytes.fromhex(salt) or None,
        info=bytes.fromhex(info),
        length=length,
    )
    assert result.hex() == okm


def test_hkdf_length_limits() -> None:
    with pytest.raises(InvalidArgumentError):
        hkdf_sha256(b"x", salt=None, info=b"", length=0)
    with pytest.raises(InvalidArgumentError):
        hkdf_sha256(b"x", salt=None, info=b"", length=255 * 32 + 1)


def test_libsignal_chain_key_vector() -> None:
    # libsignal rust/protocol/src/ratchet/keys.rs, test_chain_key_derivation
    seed = bytes.fromhex("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f")
    chain = ChainKey(seed, 0)
    keys = MessageKeys.from_seed(message_key_seed(chain), chain.index)
    assert keys.cipher_key.hex() == (
        "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
    )
    assert keys.mac_key.hex() == "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
    following = next_chain_key(chain)
    assert following.key.hex() == (
        "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"
    )
    assert following.index == 1
    assert keys.counter == 0
    assert len(keys.iv) == 16


def test_aes_cbc_nist_vector_and_padding() -> None:
    # NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first block; PKCS#7 adds one full block
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    iv = bytes(range(16))
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    ciphertext = aes_cbc_encrypt(plaintext, key, iv)
    assert ciphertext[:16].hex() == "f58c4c04d6e5f1ba779eabfb5f7bfbd6"
    assert len(ciphertext) == 32
    assert aes_cbc_decrypt(ciphertext, key, iv) == plaintext
    assert aes_cbc_decrypt(aes_cbc_encrypt(b"", key, iv), key, iv) == b""


def test_aes_cbc_rejects_bad_input() -> None:
    key, iv = bytes(32), bytes(16)
    with pytest.raises(InvalidMessageError):
        aes_cbc_decrypt(b"", key, iv)
    with pytest.raises(InvalidMessageError):
        aes_cbc_decrypt(bytes(17), key, iv)
    ciphertext = bytearray(aes_cbc_encrypt(b"hello", key, iv))
    ciphertext[-1] ^= 0xFF  # scrambles the padding block
    with pytest.raises(InvalidMessageError):
        aes_cbc_decrypt(bytes(ciphertext), key, iv)
