"""Key encapsulation keys as libsignal encodes them: ML-KEM-1024 and the legacy Kyber1024.

Owns: `KemType`, `KemPublicKey`, `KemSecretKey`, `KemKeyPair`, their serialized forms, and
encapsulation / decapsulation. Knows nothing of prekeys or sessions: PQXDH decides what the shared
secret is for.

Encodings (libsignal ``rust/protocol/src/kem.rs``):

* a public key is one type byte followed by the raw key: ``0x08`` for round-3 Kyber1024 and
  ``0x0A`` for ML-KEM-1024 (FIPS 203), 1,568 key bytes for both;
* a ciphertext carries the same type byte in front of the 1,568 raw bytes, and decapsulation
  refuses a ciphertext whose type differs from the secret key's;
* a Kyber1024 secret key is libsignal's 3,168-byte expanded form (``sk' || pk || H(pk) || z``),
  so keys made by libsignal load here. An ML-KEM-1024 secret key is stored in kurir's own form,
  the 64-byte seed ``d || z`` of FIPS 203 (pyca `cryptography` loads only seeds); libsignal
  never sees our secret keys, so nothing depends on that choice.

libsignal 0.90.0 (and every release up to at least 0.103) is built without its ``mlkem1024``
feature: it generates Kyber1024 keys and refuses a ``0x0A`` key with "bad KEM key type". kurir
therefore accepts both types from peers, and a bundle meant for a libsignal peer must carry a
Kyber1024 key.

Randomness: Kyber1024 (pure-Python ``kyber_py``) draws every random byte from the injected `Rng`.
pyca exposes no seeded ML-KEM encapsulation, so ML-KEM encapsulation draws from the operating
system; ML-KEM key generation uses the injected `Rng` for its seed.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import Self

from cryptography.hazmat.primitives.asymmetric.mlkem import (
    MLKEM1024PrivateKey,
    MLKEM1024PublicKey,
)
from kyber_py.kyber.default_parameters import DEFAULT_PARAMETERS
from kyber_py.kyber.kyber import Kyber

from kurir.crypto.curve import Rng
from kurir.crypto.errors import BadKeyTypeError, InvalidKeyError, InvalidMessageError

PUBLIC_KEY_LENGTH = 1568
"""Raw public key length of both KEM types (without the type byte)."""

CIPHERTEXT_LENGTH = 1568
"""Raw ciphertext length of both KEM types (without the type byte)."""

SHARED_SECRET_LENGTH = 32

KYBER1024_SECRET_KEY_LENGTH = 3168
MLKEM1024_SEED_LENGTH = 64


class KemType(enum.IntEnum):
    """libsignal's KEM key type bytes."""

    KYBER1024 = 0x08
    """Round-3 CRYSTALS-Kyber1024: what libsignal generates; accepted from peers."""

    MLKEM1024 = 0x0A
    """ML-KEM-1024 (FIPS 203): kurir's own keys."""


def _kem_type(type_byte: int) -> KemType:
    try:
        return KemType(type_byte)
    except ValueError:
        raise BadKeyTypeError(type_byte) from None


def _kyber(rng: Rng | None = None) -> Kyber:
    # A fresh instance per call so the injected randomness never leaks into a shared object.
    instance = Kyber(DEFAULT_PARAMETERS["kyber_1024"])
    if rng is not None:
        instance.random_bytes = rng
    return instance


def _kyber_encapsulate(public_key: bytes, rng: Rng) -> tuple[bytes, bytes]:
    shared_secret, ciphertext = _kyber(rng).encaps(public_key)
    return bytes(shared_secret), bytes(ciphertext)


@dataclass(frozen=True, slots=True)
class KemPublicKey:
    """A KEM public key of either type.

    Attributes:
        kem_type: which KEM the key belongs to.
        key: the raw key bytes (without the type byte).
    """

    kem_type: KemType
    key: bytes = field(repr=False)
    _mlkem: MLKEM1024PublicKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.key) != PUBLIC_KEY_LENGTH:
            raise InvalidKeyError(f"KEM public key must be {PUBLIC_KEY_LENGTH} bytes")
        if self.kem_type is KemType.MLKEM1024:
            try:
                # kept: checking the key is the same work as loading it for encapsulation
                object.__setattr__(self, "_mlkem", MLKEM1024PublicKey.from_public_bytes(self.key))
            except ValueError as exc:
                raise InvalidKeyError("invalid ML-KEM-1024 public key") from exc

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses libsignal's encoding (type byte + raw key).

        Raises:
            InvalidKeyError: empty input or wrong length.
            BadKeyTypeError: a type byte other than ``0x08`` or ``0x0A``.
        """
        if not data:
            raise InvalidKeyError("empty KEM public key")
        kem_type = _kem_type(data[0])
        if len(data) != 1 + PUBLIC_KEY_LENGTH:
            raise InvalidKeyError(f"KEM public key must be {1 + PUBLIC_KEY_LENGTH} bytes")
        return cls(kem_type, bytes(data[1:]))

    def serialize(self) -> bytes:
        """Returns libsignal's encoding (type byte + raw key); prekey signatures cover it."""
        return bytes((self.kem_type,)) + self.key

    def encapsulate(self, rng: Rng) -> tuple[bytes, bytes]:
        """Makes a fresh shared secret and its ciphertext for the holder of the secret key.

        Args:
            rng: randomness for Kyber1024 (ML-KEM draws from the operating system; see the
                module docstring).

        Returns:
            ``(shared_secret, ciphertext)``: 32 bytes, and the serialized ciphertext with its type
            byte, as it goes into a PreKeySignalMessage.
        """
        if self._mlkem is None:  # set by __post_init__ exactly for ML-KEM-1024 keys
            shared_secret, raw = _kyber_encapsulate(self.key, rng)
        else:
            shared_secret, raw = self._mlkem.encapsulate()
        return shared_secret, bytes((self.kem_type,)) + raw


@dataclass(frozen=True, slots=True)
class KemSecretKey:
    """A KEM secret key of either type (see the module docstring for the two encodings).

    Attributes:
        kem_type: which KEM the key belongs to.
        key: Kyber1024: the 3,168-byte expanded key; ML-KEM-1024: the 64-byte seed.
    """

    kem_type: KemType
    key: bytes = field(repr=False)
    _mlkem: MLKEM1024PrivateKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expected = (
            KYBER1024_SECRET_KEY_LENGTH
            if self.kem_type is KemType.KYBER1024
            else MLKEM1024_SEED_LENGTH
        )
        if len(self.key) != expected:
            raise InvalidKeyError(f"{self.kem_type.name} secret key must be {expected} bytes")

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a type byte followed by the secret key bytes.

        Raises:
            InvalidKeyError: empty input or wrong length.
            BadKeyTypeError: an unknown type byte.
        """
        if not data:
            raise InvalidKeyError("empty KEM secret key")
        return cls(_kem_type(data[0]), bytes(data[1:]))

    def serialize(self) -> bytes:
        """Returns the type byte + secret key. Keep it in local encrypted storage only."""
        return bytes((self.kem_type,)) + self.key

    def public_key(self) -> KemPublicKey:
        """Returns the matching public key."""
        return KemPublicKey(self.kem_type, self._public_bytes())

    def _public_bytes(self) -> bytes:
        if self.kem_type is KemType.KYBER1024:
            # sk = sk' || pk || H(pk) || z  (Kyber round 3, Algorithm 7)
            return self.key[1536 : 1536 + PUBLIC_KEY_LENGTH]
        return self._expanded().public_key().public_bytes_raw()

    def _expanded(self) -> MLKEM1024PrivateKey:
        # FIPS 203 key generation from the stored seed, done once per loaded key: the key pair
        # check, the public key and decapsulation all need it.
        private = self._mlkem
        if private is None:
            private = MLKEM1024PrivateKey.from_seed_bytes(self.key)
            object.__setattr__(self, "_mlkem", private)
        return private

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """Recovers the shared secret from a serialized ciphertext (type byte + raw bytes).

        Raises:
            InvalidMessageError: the ciphertext is empty, of another KEM type, or of the wrong
                length. (A well-formed but forged ciphertext yields an unrelated secret, as KEMs
                do; the MAC of the message it came with then fails.)
        """
        if not ciphertext:
            raise InvalidMessageError("empty KEM ciphertext")
        if ciphertext[0] != self.kem_type:
            raise InvalidMessageError(
                f"KEM ciphertext of type 0x{ciphertext[0]:02x} for a 0x{self.kem_type:02x} key"
            )
        raw = bytes(ciphertext[1:])
        if len(raw) != CIPHERTEXT_LENGTH:
            raise InvalidMessageError(f"KEM ciphertext must be {1 + CIPHERTEXT_LENGTH} bytes")
        if self.kem_type is KemType.KYBER1024:
            return bytes(_kyber().decaps(self.key, raw))
        try:
            return self._expanded().decapsulate(raw)
        except ValueError as exc:
            raise InvalidMessageError("invalid ML-KEM-1024 ciphertext") from exc


@dataclass(frozen=True, slots=True)
class KemKeyPair:
    """A KEM secret key with its public key.

    Attributes:
        public_key: the half that goes into a bundle.
        secret_key: the half that stays on the device.
    """

    public_key: KemPublicKey
    secret_key: KemSecretKey

    def __post_init__(self) -> None:
        if self.public_key.kem_type is not self.secret_key.kem_type:
            raise InvalidKeyError("KEM key pair halves are of different types")
        if not hmac.compare_digest(self.secret_key._public_bytes(), self.public_key.key):
            raise InvalidKeyError("KEM key pair halves do not match")

    @classmethod
    def generate(cls, rng: Rng, kem_type: KemType = KemType.MLKEM1024) -> Self:
        """Makes a new key pair of the given type from the injected randomness."""
        if kem_type is KemType.KYBER1024:
            public, secret = _kyber(rng).keygen()
            return cls(KemPublicKey(kem_type, bytes(public)), KemSecretKey(kem_type, bytes(secret)))
        secret_key = KemSecretKey(kem_type, rng(MLKEM1024_SEED_LENGTH))
        return cls(secret_key.public_key(), secret_key)

    @classmethod
    def from_secret_key(cls, secret_key: KemSecretKey) -> Self:
        """Completes a key pair from its secret half."""
        return cls(secret_key.public_key(), secret_key)
