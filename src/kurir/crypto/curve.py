"""Curve25519 keys as libsignal encodes them, with X25519 agreement and XEdDSA signatures.

Owns: `PublicKey`, `PrivateKey`, `KeyPair`, their serialized forms, Diffie-Hellman agreement
and the XEdDSA signature scheme in libsignal's variant. Knows nothing of prekeys, sessions or
messages: callers decide what a key is for.

Encodings (libsignal `rust/protocol/src/curve.rs`):

* a public key is serialized as the type byte ``0x05`` (``DJB``) followed by the 32-byte
  little-endian Montgomery u-coordinate;
* a private key is the 32-byte scalar, clamped on load (RFC 7748 section 5).

XEdDSA (Signal's "The XEdDSA and VXEdDSA Signature Schemes", rev. 1, section 2.3) signs with a
Montgomery private key by computing its twisted-Edwards image. libsignal departs from the
document in one way, followed here: instead of negating the private scalar so that the Edwards
public key has sign bit 0, it keeps the scalar and stores the Edwards key's sign bit in the top
bit of the signature's last byte; the verifier takes the sign from there.

Point operations on Ed25519 with a raw (non-hashed) scalar are not exposed by pyca
`cryptography`, so signing uses libsodium's no-clamp base-point multiplication through PyNaCl;
verification is a standard Ed25519 verification (pyca) of the converted public key. Scalar
arithmetic mod the group order is plain integer arithmetic.

X25519 (agreement and public-key derivation) is libsodium's too, called on the raw 32 bytes:
pyca would need a key object per stored key, and building an ``X25519PrivateKey`` derives its
public key (a scalar multiplication, about 20 us here), so agreeing with a key loaded from a
session record cost two scalar multiplications instead of one. Keys are therefore plain bytes,
checked for length and clamped, and cost nothing to load. Both libraries implement RFC 7748 and
refuse an all-zero shared secret (a small-order peer key).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import (
    crypto_scalarmult,
    crypto_scalarmult_base,
    crypto_scalarmult_ed25519_base_noclamp,
)
from nacl.exceptions import RuntimeError as NaclRuntimeError

from kurir.crypto.errors import BadKeyTypeError, InvalidKeyError

Rng = Callable[[int], bytes]
"""A source of random bytes: called with a length, returns that many bytes.

Production code passes `os.urandom`; tests pass a seeded generator (``random.Random(s).randbytes``).
"""

DJB_TYPE = 0x05
"""libsignal's type byte for Curve25519 public keys."""

KEY_LENGTH = 32
SIGNATURE_LENGTH = 64

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point
_XEDDSA_HASH1_PREFIX = b"\xfe" + b"\xff" * 31  # XEdDSA section 2.3: hash_1 = hash(2^256 - 2 ...)


def _clamp(scalar: bytes) -> bytes:
    first, last = scalar[0], scalar[31]
    clamped_first, clamped_last = first & 248, (last & 127) | 64
    if first == clamped_first and last == clamped_last:
        return bytes(scalar)  # stored keys are already clamped
    return bytes((clamped_first,)) + scalar[1:31] + bytes((clamped_last,))


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A Curve25519 public key.

    Attributes:
        key: the 32-byte Montgomery u-coordinate (without the type byte).
    """

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LENGTH:
            raise InvalidKeyError(f"public key must be {KEY_LENGTH} bytes, got {len(self.key)}")

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses libsignal's 33-byte encoding (type byte ``0x05`` + key).

        Raises:
            InvalidKeyError: empty input or wrong length.
            BadKeyTypeError: a type byte other than ``0x05``.
        """
        if not data:
            raise InvalidKeyError("empty public key")
        if data[0] != DJB_TYPE:
            raise BadKeyTypeError(data[0])
        if len(data) != 1 + KEY_LENGTH:
            raise InvalidKeyError(f"public key must be {1 + KEY_LENGTH} bytes, got {len(data)}")
        return cls(bytes(data[1:]))

    def serialize(self) -> bytes:
        """Returns libsignal's 33-byte encoding."""
        return bytes((DJB_TYPE,)) + self.key

    def verify_signature(self, message: bytes, signature: bytes) -> bool:
        """Verifies an XEdDSA signature made by the matching private key.

        Args:
            message: the signed bytes.
            signature: 64 bytes as made by `PrivateKey.calculate_signature`.

        Returns:
            True when the signature is valid; False for any invalid or malformed signature.
        """
        if len(signature) != SIGNATURE_LENGTH:
            return False
        sign_bit = signature[63] & 0x80
        s = bytearray(signature[32:])
        s[31] &= 0x7F
        if s[31] & 0xE0:
            return False  # s must be below 2^253, as libsignal requires
        u = int.from_bytes(self.key, "little") & ((1 << 255) - 1)
        u %= _P
        if u == _P - 1:
            return False  # u = -1 has no Edwards image
        y = (u - 1) * pow(u + 1, -1, _P) % _P
        edwards = bytearray(y.to_bytes(32, "little"))
        edwards[31] |= sign_bit
        try:
            Ed25519PublicKey.from_public_bytes(bytes(edwards)).verify(
                signature[:32] + bytes(s), message
            )
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A Curve25519 private key (a clamped scalar).

    Attributes:
        key: the 32-byte clamped scalar.
    """

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LENGTH:
            raise InvalidKeyError(f"private key must be {KEY_LENGTH} bytes, got {len(self.key)}")
        object.__setattr__(self, "key", _clamp(self.key))

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> Self:
        """Makes a new private key from 32 random bytes."""
        return cls(rng(KEY_LENGTH))

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses the 32-byte scalar (clamping it, as libsignal does)."""
        return cls(bytes(data))

    def serialize(self) -> bytes:
        """Returns the 32-byte clamped scalar. Keep it in local encrypted storage only."""
        return self.key

    def public_key(self) -> PublicKey:
        """Returns the matching public key."""
        return PublicKey(crypto_scalarmult_base(self.key))

    def agree(self, their_key: PublicKey) -> bytes:
        """X25519 (RFC 7748) with a peer's public key.

        Raises:
            InvalidKeyError: the peer's key is of small order (the shared secret would be zero).
        """
        try:
            return crypto_scalarmult(self.key, their_key.key)
        except NaclRuntimeError as exc:  # libsodium refuses an all-zero shared secret
            raise InvalidKeyError("agreement with a small-order public key") from exc

    def calculate_signature(self, message: bytes, rng: Rng = os.urandom) -> bytes:
        """Signs with XEdDSA in libsignal's variant (see the module docstring).

        Args:
            message: the bytes to sign.
            rng: source of the 64 random bytes XEdDSA mixes into its nonce.

        Returns:
            The 64-byte signature.
        """
        a = int.from_bytes(self.key, "little")
        edwards_public = crypto_scalarmult_ed25519_base_noclamp(self.key)
        sign_bit = edwards_public[31] & 0x80
        nonce_hash = hashlib.sha512(_XEDDSA_HASH1_PREFIX + self.key + message + rng(64)).digest()
        r = int.from_bytes(nonce_hash, "little") % _L
        cap_r = crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
        h = int.from_bytes(hashlib.sha512(cap_r + edwards_public + message).digest(), "little")
        s = (h % _L * (a % _L) + r) % _L
        signature = bytearray(cap_r + s.to_bytes(32, "little"))
        signature[63] = (signature[63] & 0x7F) | sign_bit
        return bytes(signature)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key with its public key.

    Attributes:
        private_key: the secret half.
        public_key: the public half.
    """

    private_key: PrivateKey
    public_key: PublicKey

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> Self:
        """Makes a new random key pair."""
        return cls.from_private_key(PrivateKey.generate(rng))

    @classmethod
    def from_private_key(cls, private_key: PrivateKey) -> Self:
        """Completes a key pair from its private half."""
        return cls(private_key, private_key.public_key())

    def calculate_signature(self, message: bytes, rng: Rng = os.urandom) -> bytes:
        """Signs `message` with XEdDSA; see `PrivateKey.calculate_signature`."""
        return self.private_key.calculate_signature(message, rng)
