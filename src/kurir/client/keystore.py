"""The Signal store Protocols (`kurir.crypto.stores`) over the client's SQLite store.

Owns: `SqliteProtocolStore`, one object implementing `IdentityKeyStore`, `PreKeyStore`,
`SignedPreKeyStore`, `KyberPreKeyStore` and `SessionStore` by (de)serializing the crypto
records into `ClientStore` rows. It makes no decision beyond the trust rule below; it does not
commit: the caller wraps each cipher operation in `ClientStore.transaction`, so that an
operation's identity, prekey and session changes (and the decrypted message) land together or
not at all.

Trust (as Signal's apps): identities are keyed by account (the ProtocolAddress name), trusted on
first use. When receiving, a changed identity is accepted (the session cipher records it with
`save_identity`, the safety number changes, and the receive path tells the application with an
`IdentityChangedEvent`). When sending, a changed identity is refused
until the application accepts it (`Client.accept_identity`), so nothing is encrypted to a new
key the user has not been told about.
"""

from __future__ import annotations

from kurir.client.store import ClientStore
from kurir.crypto.address import ProtocolAddress
from kurir.crypto.curve import PrivateKey, PublicKey
from kurir.crypto.errors import InvalidPreKeyMessageError, InvalidStateError
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
from kurir.crypto.stores import Direction

__all__ = ["SqliteProtocolStore"]


class SqliteProtocolStore:
    """All five Signal store Protocols over one `ClientStore`.

    Args:
        store: the profile's store; it must hold a registered account.

    Raises:
        InvalidStateError: the store holds no account.
    """

    def __init__(self, store: ClientStore) -> None:
        account = store.account()
        if account is None:
            raise InvalidStateError("the store holds no account")
        self._store = store
        self._identity = IdentityKeyPair(
            PublicKey.deserialize(account.identity_public),
            PrivateKey.deserialize(account.identity_private),
        )
        self._registration_id = account.registration_id
        self.changed_identities: list[str] = []
        """Names whose trusted identity key was replaced (the receive path reports them)."""

    # --- IdentityKeyStore ------------------------------------------------------------------

    def get_identity_key_pair(self) -> IdentityKeyPair:
        return self._identity

    def get_local_registration_id(self) -> int:
        return self._registration_id

    def save_identity(self, address: ProtocolAddress, identity_key: PublicKey) -> bool:
        changed = self._store.put_identity(address.name, identity_key.serialize())
        if changed:
            self.changed_identities.append(address.name)
        return changed

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: PublicKey, direction: Direction
    ) -> bool:
        if direction is Direction.RECEIVING:
            return True
        known = self._store.identity(address.name)
        return known is None or known == identity_key.serialize()

    def get_identity(self, address: ProtocolAddress) -> PublicKey | None:
        data = self._store.identity(address.name)
        return None if data is None else PublicKey.deserialize(data)

    # --- PreKeyStore -----------------------------------------------------------------------

    def get_pre_key(self, pre_key_id: PreKeyId) -> PreKeyRecord | None:
        data = self._store.prekey(pre_key_id)
        return None if data is None else PreKeyRecord.deserialize(data)

    def save_pre_key(self, pre_key_id: PreKeyId, record: PreKeyRecord) -> None:
        self._store.put_prekey(pre_key_id, record.serialize())

    def remove_pre_key(self, pre_key_id: PreKeyId) -> None:
        self._store.remove_prekey(pre_key_id)

    # --- SignedPreKeyStore -----------------------------------------------------------------

    def get_signed_pre_key(self, signed_pre_key_id: SignedPreKeyId) -> SignedPreKeyRecord | None:
        data = self._store.signed_prekey(signed_pre_key_id)
        return None if data is None else SignedPreKeyRecord.deserialize(data)

    def save_signed_pre_key(
        self, signed_pre_key_id: SignedPreKeyId, record: SignedPreKeyRecord
    ) -> None:
        self._store.put_signed_prekey(signed_pre_key_id, record.serialize())

    # --- KyberPreKeyStore ------------------------------------------------------------------

    def get_kyber_pre_key(self, kyber_pre_key_id: KyberPreKeyId) -> KyberPreKeyRecord | None:
        data = self._store.kyber_prekey(kyber_pre_key_id)
        return None if data is None else KyberPreKeyRecord.deserialize(data)

    def save_kyber_pre_key(
        self, kyber_pre_key_id: KyberPreKeyId, record: KyberPreKeyRecord, *, last_resort: bool
    ) -> None:
        self._store.put_kyber_prekey(kyber_pre_key_id, record.serialize(), last_resort=last_resort)

    def mark_kyber_pre_key_used(
        self,
        kyber_pre_key_id: KyberPreKeyId,
        signed_pre_key_id: SignedPreKeyId,
        base_key: PublicKey,
    ) -> None:
        if not self._store.is_last_resort(kyber_pre_key_id):
            self._store.use_kyber_prekey(kyber_pre_key_id)
            return
        if not self._store.record_last_resort_use(
            kyber_pre_key_id, signed_pre_key_id, base_key.serialize()
        ):
            raise InvalidPreKeyMessageError("last-resort KEM prekey reused with the same base key")

    # --- SessionStore ----------------------------------------------------------------------

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        data = self._store.session(address.name, address.device_id)
        return None if data is None else SessionRecord.deserialize(data)

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        self._store.put_session(address.name, address.device_id, record.serialize())
