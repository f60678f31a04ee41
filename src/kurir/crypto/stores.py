"""The storage the Signal protocol needs, as narrow Protocols, with in-memory references.

Owns: `IdentityKeyStore`, `PreKeyStore`, `SignedPreKeyStore`, `KyberPreKeyStore`,
`SessionStore`, the `Direction` of a trust decision, and the `InMemory*` implementations used by
tests and as the reference behaviour for kurir's SQLite client store. Knows nothing of how
records are made: the session cipher calls these, the client's composition root provides them.

Modelled on libsignal's ``rust/protocol/src/storage/traits.rs`` and ``inmem.rs``, synchronous
(crypto is CPU-bound and sans-I/O; a store that must do I/O does it synchronously, e.g. SQLite).

Contract for every implementation (the session cipher relies on it):

* getters return None for an unknown id or address; they never raise for "not found";
* records are values: what `store_session` receives may be kept by reference only if it is
  never mutated afterwards; the in-memory stores keep serialized bytes, as a disk store does;
* the session cipher calls the mutating methods only after an operation fully succeeded, in this
  order: KEM prekey marking (the one write that may refuse), identity, one-time prekey removal,
  session. A store that can should commit them in one transaction.
"""

from __future__ import annotations

import enum
from typing import Protocol

from kurir.crypto.address import ProtocolAddress
from kurir.crypto.curve import PublicKey
from kurir.crypto.errors import InvalidPreKeyMessageError
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    KyberPreKeyRecord,
    PreKeyId,
    PreKeyRecord,
    SignedPreKeyId,
    SignedPreKeyRecord,
)
from kurir.crypto.session import SessionRecord


class Direction(enum.Enum):
    """Why an identity is being checked (a store may trust differently for each)."""

    SENDING = enum.auto()
    RECEIVING = enum.auto()


class IdentityKeyStore(Protocol):
    """Our identity and the identities we have seen for peer devices."""

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Returns this device's identity key pair."""
        ...

    def get_local_registration_id(self) -> int:
        """Returns this device's registration id (1..16380)."""
        ...

    def save_identity(self, address: ProtocolAddress, identity_key: PublicKey) -> bool:
        """Records `identity_key` for `address`.

        Returns:
            True when it replaced a different key (the app should show "safety number
            changed"), False when new or unchanged.
        """
        ...

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: PublicKey, direction: Direction
    ) -> bool:
        """Whether `identity_key` may be used with `address` (trust on first use: a key differing
        from the recorded one is untrusted until the app accepts it with `save_identity`)."""
        ...

    def get_identity(self, address: ProtocolAddress) -> PublicKey | None:
        """Returns the recorded identity key of `address`, if any."""
        ...


class PreKeyStore(Protocol):
    """Our one-time EC prekeys."""

    def get_pre_key(self, pre_key_id: PreKeyId) -> PreKeyRecord | None:
        """Returns the prekey, or None when unknown (already used or never made)."""
        ...

    def save_pre_key(self, pre_key_id: PreKeyId, record: PreKeyRecord) -> None:
        """Stores a prekey before it is published."""
        ...

    def remove_pre_key(self, pre_key_id: PreKeyId) -> None:
        """Deletes a prekey once a session used it (a no-op when unknown)."""
        ...


class SignedPreKeyStore(Protocol):
    """Our signed EC prekeys (the current one and recently rotated ones)."""

    def get_signed_pre_key(self, signed_pre_key_id: SignedPreKeyId) -> SignedPreKeyRecord | None:
        """Returns the signed prekey, or None when unknown."""
        ...

    def save_signed_pre_key(
        self, signed_pre_key_id: SignedPreKeyId, record: SignedPreKeyRecord
    ) -> None:
        """Stores a signed prekey."""
        ...


class KyberPreKeyStore(Protocol):
    """Our signed KEM prekeys: one-time ones and the last-resort one."""

    def get_kyber_pre_key(self, kyber_pre_key_id: KyberPreKeyId) -> KyberPreKeyRecord | None:
        """Returns the KEM prekey, or None when unknown."""
        ...

    def save_kyber_pre_key(
        self, kyber_pre_key_id: KyberPreKeyId, record: KyberPreKeyRecord, *, last_resort: bool
    ) -> None:
        """Stores a KEM prekey; `last_resort` keys survive use."""
        ...

    def mark_kyber_pre_key_used(
        self,
        kyber_pre_key_id: KyberPreKeyId,
        signed_pre_key_id: SignedPreKeyId,
        base_key: PublicKey,
    ) -> None:
        """Called after a PreKeySignalMessage using the key decrypted.

        A one-time key is deleted. A last-resort key is kept, and the store remembers the
        ``(signed prekey id, base key)`` pair it was used with, refusing the same pair again.

        Raises:
            InvalidPreKeyMessageError: the last-resort key was already used with this base key
                (a replayed session start).
        """
        ...


class SessionStore(Protocol):
    """One `SessionRecord` per peer device."""

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """Returns the record for `address`, or None when there is none."""
        ...

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Replaces the record for `address`."""
        ...


# --- in-memory reference implementations ------------------------------------------------------


class InMemoryIdentityKeyStore:
    """`IdentityKeyStore` in a dict, trusting on first use."""

    def __init__(self, identity: IdentityKeyPair, registration_id: int) -> None:
        self._identity = identity
        self._registration_id = registration_id
        self._known: dict[ProtocolAddress, PublicKey] = {}

    def get_identity_key_pair(self) -> IdentityKeyPair:
        return self._identity

    def get_local_registration_id(self) -> int:
        return self._registration_id

    def save_identity(self, address: ProtocolAddress, identity_key: PublicKey) -> bool:
        previous = self._known.get(address)
        self._known[address] = identity_key
        return previous is not None and previous != identity_key

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: PublicKey, direction: Direction
    ) -> bool:
        known = self._known.get(address)
        return known is None or known == identity_key

    def get_identity(self, address: ProtocolAddress) -> PublicKey | None:
        return self._known.get(address)


class InMemoryPreKeyStore:
    """`PreKeyStore` in a dict of serialized records."""

    def __init__(self) -> None:
        self._records: dict[PreKeyId, bytes] = {}

    def get_pre_key(self, pre_key_id: PreKeyId) -> PreKeyRecord | None:
        data = self._records.get(pre_key_id)
        return None if data is None else PreKeyRecord.deserialize(data)

    def save_pre_key(self, pre_key_id: PreKeyId, record: PreKeyRecord) -> None:
        self._records[pre_key_id] = record.serialize()

    def remove_pre_key(self, pre_key_id: PreKeyId) -> None:
        self._records.pop(pre_key_id, None)

    def __len__(self) -> int:
        return len(self._records)


class InMemorySignedPreKeyStore:
    """`SignedPreKeyStore` in a dict of serialized records."""

    def __init__(self) -> None:
        self._records: dict[SignedPreKeyId, bytes] = {}

    def get_signed_pre_key(self, signed_pre_key_id: SignedPreKeyId) -> SignedPreKeyRecord | None:
        data = self._records.get(signed_pre_key_id)
        return None if data is None else SignedPreKeyRecord.deserialize(data)

    def save_signed_pre_key(
        self, signed_pre_key_id: SignedPreKeyId, record: SignedPreKeyRecord
    ) -> None:
        self._records[signed_pre_key_id] = record.serialize()


class InMemoryKyberPreKeyStore:
    """`KyberPreKeyStore` in dicts: one-time keys deleted on use, last-resort keys kept."""

    def __init__(self) -> None:
        self._records: dict[KyberPreKeyId, bytes] = {}
        self._last_resort: set[KyberPreKeyId] = set()
        self._used: set[tuple[KyberPreKeyId, SignedPreKeyId, bytes]] = set()

    def get_kyber_pre_key(self, kyber_pre_key_id: KyberPreKeyId) -> KyberPreKeyRecord | None:
        data = self._records.get(kyber_pre_key_id)
        return None if data is None else KyberPreKeyRecord.deserialize(data)

    def save_kyber_pre_key(
        self, kyber_pre_key_id: KyberPreKeyId, record: KyberPreKeyRecord, *, last_resort: bool
    ) -> None:
        self._records[kyber_pre_key_id] = record.serialize()
        if last_resort:
            self._last_resort.add(kyber_pre_key_id)
        else:
            self._last_resort.discard(kyber_pre_key_id)

    def mark_kyber_pre_key_used(
        self,
        kyber_pre_key_id: KyberPreKeyId,
        signed_pre_key_id: SignedPreKeyId,
        base_key: PublicKey,
    ) -> None:
        if kyber_pre_key_id not in self._last_resort:
            self._records.pop(kyber_pre_key_id, None)
            return
        use = (kyber_pre_key_id, signed_pre_key_id, base_key.serialize())
        if use in self._used:
            raise InvalidPreKeyMessageError("last-resort KEM prekey reused with the same base key")
        self._used.add(use)


class InMemorySessionStore:
    """`SessionStore` in a dict of serialized records (so every load is a fresh value)."""

    def __init__(self) -> None:
        self._records: dict[ProtocolAddress, bytes] = {}

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        data = self._records.get(address)
        return None if data is None else SessionRecord.deserialize(data)

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        self._records[address] = record.serialize()
