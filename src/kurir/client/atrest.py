"""At-rest encryption of the client store: the store key, who holds it, and how values are sealed.

Owns: the `KeyProvider` Protocol the embedding application supplies, its two implementations
(`KeyFile`, the development default and stand-in for an OS keystore, and `Passphrase`), and
`StoreCipher`, which seals single values with the store key. It knows no table and no SQL:
`kurir.client.store` decides which columns are sealed and with which row identity.

Keys (docs/threat-model.md §Client device):

- The **store key** is 32 random bytes made when a profile is created (or migrated). It never
  touches the disk in the clear: the provider *seals* it, and the store file keeps only the
  sealed form. This is Signal Android's shape (a SQLCipher key sealed by an Android Keystore
  key) and Signal Desktop's (a key protected by the OS keychain through ``safeStorage``).
- A **key provider** seals and unseals the store key. `KeyFile` wraps it with AES-256-GCM under
  a random key kept in a separate ``0600`` file; `Passphrase` wraps it under a key derived with
  scrypt (RFC 7914) whose salt and cost are stored beside the sealed key. A platform keystore
  (macOS Keychain, Windows DPAPI, libsecret, Android Keystore) is a third implementation of the
  same two methods, supplied by the application.
- `StoreCipher` derives two subkeys from the store key (HMAC-SHA256 with distinct labels): one
  for AES-256-GCM over values, one for blind indexes (HMAC-SHA256 of a lookup value, so an
  address can be found by equality without being stored in the clear).

A sealed value is ``0x01 || nonce (12) || ciphertext || tag (16)``. Its associated data is the
row's identity (table, column, key columns), so a value copied to another row or column fails
to decrypt. Nonces are 96 random bits from the operating system, never from the injected
``rng``: a seeded generator replayed after a restart would repeat nonces under the same key.
With random nonces one key stays safe for 2**32 seals (NIST SP 800-38D §8.3), far beyond what a
device writes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from pathlib import Path
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kurir.client.errors import StoreError
from kurir.crypto.curve import Rng

__all__ = [
    "STORE_KEY_BYTES",
    "KeyFile",
    "KeyProvider",
    "Passphrase",
    "StoreCipher",
    "UnreadableValueError",
    "WrongKeyError",
]

STORE_KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_VALUE_VERSION: Final = b"\x01"
_WRAP_AAD: Final = b"kurir client store key v1"
_KEY_FILE_TAG: Final = b"keyfile1"
_SCRYPT_TAG: Final = b"scrypt1"
_SALT_BYTES: Final = 16
_SCRYPT_HEADER: Final = struct.Struct(">BBB")  # log2(N), r, p
_MIN_COST_LOG2: Final = 14
_MAX_COST_LOG2: Final = 20
"""Bounds on a stored scrypt cost: below is too weak to accept, above would let a tampered
file ask for gigabytes of memory."""


class WrongKeyError(StoreError):
    """The key provider cannot open this profile's store key: wrong passphrase, another key
    file, a missing key file, or a profile sealed by another kind of provider. Nothing in the
    profile was changed."""


class UnreadableValueError(StoreError):
    """A sealed value in the store does not decrypt under its row's identity: it was moved to
    another row or column, changed, or the file is corrupt."""


class KeyProvider(Protocol):
    """Holds the key that protects a profile's store key. The embedding application supplies
    one to `kurir.client.Client.open`.

    Both methods run once per open (``seal`` when a profile is created or migrated, ``unseal``
    on every later open), never on the message path.
    """

    def seal(self, store_key: bytes) -> bytes:
        """Protects a new store key; the result is stored in the profile's file.

        Raises:
            StoreError: the provider cannot keep a key (e.g. its key file cannot be written).
        """
        ...

    def unseal(self, sealed: bytes) -> bytes:
        """Returns the store key from what `seal` returned.

        Raises:
            WrongKeyError: this provider's key does not open it.
        """
        ...


def _wrap(kek: bytes, tag: bytes, header: bytes, store_key: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    prefix = tag + header
    return prefix + nonce + AESGCM(kek).encrypt(nonce, store_key, _WRAP_AAD + prefix)


def _unwrap(kek: bytes, prefix: bytes, rest: bytes, what: str) -> bytes:
    nonce, body = rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]
    try:
        store_key = AESGCM(kek).decrypt(nonce, body, _WRAP_AAD + prefix)
    except (InvalidTag, ValueError):
        raise WrongKeyError(f"{what} does not open this profile's store") from None
    if len(store_key) != STORE_KEY_BYTES:
        raise WrongKeyError(f"{what} does not open this profile's store")
    return store_key


def _other_provider(sealed: bytes) -> str:
    if sealed.startswith(_SCRYPT_TAG):
        return "this profile is protected by a passphrase, not a key file"
    if sealed.startswith(_KEY_FILE_TAG):
        return "this profile is protected by a key file, not a passphrase"
    return "this profile's store key was sealed by another key provider"


class KeyFile:
    """Seals the store key under a random 256-bit key kept in its own ``0600`` file.

    The development default of `kurir client` and `kurir demo`, and the stand-in for an OS
    keystore: the protection is only as good as the separation of the key file from the
    profile. Kept beside the profile directory (`KeyFile.beside`), a copy or backup of the
    profile directory alone does not carry its key; a thief of the whole disk gets both.

    Args:
        path: the key file; `seal` creates it (and its directory, ``0700``) when missing.
        rng: randomness for a new key.
    """

    def __init__(self, path: Path | str, *, rng: Rng = os.urandom) -> None:
        self.path = Path(path)
        self._rng = rng

    @classmethod
    def beside(cls, profile: Path | str, *, rng: Rng = os.urandom) -> KeyFile:
        """The default key file of a profile directory: ``PROFILE.key`` next to it."""
        resolved = Path(profile).resolve()
        return cls(resolved.parent / f"{resolved.name}.key", rng=rng)

    def seal(self, store_key: bytes) -> bytes:
        """Wraps the store key under this file's key, creating the file if needed."""
        if not self.path.exists():
            self._create()
        return _wrap(self._read(), _KEY_FILE_TAG, b"", store_key)

    def unseal(self, sealed: bytes) -> bytes:
        """Unwraps the store key; the key file must exist and be private to its owner."""
        if not sealed.startswith(_KEY_FILE_TAG):
            raise WrongKeyError(_other_provider(sealed))
        if not self.path.exists():
            raise WrongKeyError(f"the profile's key file {self.path} is missing")
        return _unwrap(self._read(), _KEY_FILE_TAG, sealed[len(_KEY_FILE_TAG) :], "the key file")

    def _create(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.write(fd, self._rng(STORE_KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot create the key file {self.path}: {exc}") from None

    def _read(self) -> bytes:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
            key = self.path.read_bytes()
        except OSError as exc:
            raise WrongKeyError(f"cannot read the key file {self.path}: {exc}") from None
        if os.name == "posix" and mode & 0o077:
            raise WrongKeyError(
                f"the key file {self.path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        if len(key) != STORE_KEY_BYTES:
            raise WrongKeyError(f"{self.path} is not a kurir key file")
        return key


class Passphrase:
    """Seals the store key under a key derived from a passphrase with scrypt (RFC 7914).

    The salt and the cost are stored with the sealed key, so a later open needs only the
    passphrase. Changing the passphrase is `kurir.client.store.ClientStore.change_key`.

    Args:
        passphrase: the user's passphrase (UTF-8 encoded as given; never stored or logged).
        cost_log2: log2 of scrypt's N for a new seal (r=8, p=1); 17 (128 MiB, OWASP's
            recommendation) took 0.55 to 0.76 s per open on the development machine under
            load. Opening uses the cost stored in the file.
        rng: randomness for the salt.
    """

    def __init__(self, passphrase: str, *, cost_log2: int = 17, rng: Rng = os.urandom) -> None:
        if not passphrase:
            raise ValueError("the passphrase is empty")
        if not _MIN_COST_LOG2 <= cost_log2 <= _MAX_COST_LOG2:
            raise ValueError(f"cost_log2 must be {_MIN_COST_LOG2}..{_MAX_COST_LOG2}")
        self._secret = passphrase.encode()
        self._cost_log2 = cost_log2
        self._rng = rng

    def __repr__(self) -> str:
        return "Passphrase(<hidden>)"

    def seal(self, store_key: bytes) -> bytes:
        """Wraps the store key under a key derived with a fresh salt."""
        header = _SCRYPT_HEADER.pack(self._cost_log2, 8, 1) + self._rng(_SALT_BYTES)
        return _wrap(self._derive(header), _SCRYPT_TAG, header, store_key)

    def unseal(self, sealed: bytes) -> bytes:
        """Derives the key with the stored salt and cost and unwraps the store key."""
        if not sealed.startswith(_SCRYPT_TAG):
            raise WrongKeyError(_other_provider(sealed))
        end = len(_SCRYPT_TAG) + _SCRYPT_HEADER.size + _SALT_BYTES
        header = sealed[len(_SCRYPT_TAG) : end]
        cost_log2, r, p = _SCRYPT_HEADER.unpack_from(header)
        if not (_MIN_COST_LOG2 <= cost_log2 <= _MAX_COST_LOG2 and 1 <= r <= 32 and 1 <= p <= 16):
            raise WrongKeyError("the profile's passphrase parameters are out of range")
        return _unwrap(self._derive(header), _SCRYPT_TAG + header, sealed[end:], "the passphrase")

    def _derive(self, header: bytes) -> bytes:
        cost_log2, r, p = _SCRYPT_HEADER.unpack_from(header)
        salt = header[_SCRYPT_HEADER.size :]
        kdf = Scrypt(salt=salt, length=STORE_KEY_BYTES, n=1 << cost_log2, r=r, p=p)
        return kdf.derive(self._secret)


Part = str | int | bytes
"""One component of a row's identity: a table or column name, or a key column's value."""


def _aad(parts: tuple[Part, ...]) -> bytes:
    # The count and every length first, then the parts: ("ab", "c") and ("a", "bc") differ.
    data = [p if isinstance(p, bytes) else str(p).encode() for p in parts]
    return struct.pack(f">{len(data) + 1}I", len(data), *map(len, data)) + b"".join(data)


class StoreCipher:
    """Seals and opens single values of the store with the store key.

    Args:
        store_key: the unsealed store key (32 bytes).
    """

    def __init__(self, store_key: bytes) -> None:
        if len(store_key) != STORE_KEY_BYTES:
            raise ValueError("a store key is 32 bytes")
        self._aead = AESGCM(hmac.digest(store_key, b"kurir store values v1", hashlib.sha256))
        self._index_key = hmac.digest(store_key, b"kurir store index v1", hashlib.sha256)

    def seal(self, value: bytes, table: str, column: str, *key: Part) -> bytes:
        """Encrypts ``value`` bound to where it is stored: table, column, the row's key values."""
        nonce = os.urandom(_NONCE_BYTES)
        return (
            _VALUE_VERSION + nonce + self._aead.encrypt(nonce, value, _aad((table, column, *key)))
        )

    def open(self, sealed: bytes, table: str, column: str, *key: Part) -> bytes:
        """Decrypts a value sealed for the same table, column and key values.

        Raises:
            UnreadableValueError: it was sealed for another row or column, or changed.
        """
        if sealed[:1] != _VALUE_VERSION or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise UnreadableValueError(f"an unreadable value in {table}.{column}")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], _aad((table, column, *key)))
        except InvalidTag:
            raise UnreadableValueError(
                f"a value in {table}.{column} does not belong to its row (moved or changed)"
            ) from None

    def index(self, value: str) -> bytes:
        """A blind index of ``value``: equal values give equal indexes, and without the store
        key the index tells nothing about the value."""
        return hmac.digest(self._index_key, value.encode(), hashlib.sha256)
