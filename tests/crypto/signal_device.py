"""A kurir device for protocol tests: its stores, its keys and shortcuts to the session cipher.

Owns: `Device`, the two-party test participant used by the crypto tests (no sockets, seeded
randomness, a fixed clock). Knows nothing of libsignal.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import Rng
from kurir.crypto.kem import KemType
from kurir.crypto.messages import CiphertextMessage
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    PreKeyBundle,
    PreKeyId,
    SignedPreKeyId,
    generate_kyber_pre_key,
    generate_pre_keys,
    generate_signed_pre_key,
)
from kurir.crypto.session_cipher import message_decrypt, message_encrypt, process_prekey_bundle
from kurir.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Device:
    """One device with in-memory stores.

    Args:
        name: the address name peers use for it.
        seed: seed of its randomness.
        device_id: its device number.
        registration_id: its registration id.
        identity: the account's identity, shared by its devices (default: a new one).
    """

    def __init__(
        self,
        name: str,
        seed: int,
        *,
        device_id: int = 1,
        registration_id: int = 0,
        identity: IdentityKeyPair | None = None,
    ) -> None:
        self.rng: Rng = random.Random(seed).randbytes
        self.address = ProtocolAddress(name, DeviceId(device_id))
        generated = IdentityKeyPair.generate(self.rng)  # drawn always: same seed, same stream
        self.identity = identity or generated
        self.registration_id = registration_id or 1000 + seed
        self.identity_store = InMemoryIdentityKeyStore(self.identity, self.registration_id)
        self.pre_keys = InMemoryPreKeyStore()
        self.signed_pre_keys = InMemorySignedPreKeyStore()
        self.kyber_pre_keys = InMemoryKyberPreKeyStore()
        self.sessions = InMemorySessionStore()
        self.now = NOW
        self._next_id = 1

    def bundle(
        self,
        *,
        one_time: bool = True,
        kem_type: KemType = KemType.MLKEM1024,
        last_resort: bool = False,
    ) -> PreKeyBundle:
        """Makes, stores and returns a fresh bundle (new ids each call)."""
        key_id = self._next_id
        self._next_id += 1
        signed = generate_signed_pre_key(
            self.identity, SignedPreKeyId(key_id), now=self.now, rng=self.rng
        )
        self.signed_pre_keys.save_signed_pre_key(signed.id, signed)
        kyber = generate_kyber_pre_key(
            self.identity, KyberPreKeyId(key_id), now=self.now, rng=self.rng, kem_type=kem_type
        )
        self.kyber_pre_keys.save_kyber_pre_key(kyber.id, kyber, last_resort=last_resort)
        pre_key = None
        if one_time:
            (pre_key,) = generate_pre_keys(PreKeyId(key_id), 1, self.rng)
            self.pre_keys.save_pre_key(pre_key.id, pre_key)
        return PreKeyBundle(
            registration_id=self.registration_id,
            device_id=self.address.device_id,
            pre_key_id=None if pre_key is None else pre_key.id,
            pre_key=None if pre_key is None else pre_key.key_pair.public_key,
            signed_pre_key_id=signed.id,
            signed_pre_key=signed.key_pair.public_key,
            signed_pre_key_signature=signed.signature,
            identity_key=self.identity.public_key,
            kyber_pre_key_id=kyber.id,
            kyber_pre_key=kyber.key_pair.public_key,
            kyber_pre_key_signature=kyber.signature,
        )

    def start(
        self, peer: Device, *, one_time: bool = True, kem_type: KemType = KemType.MLKEM1024
    ) -> None:
        """Starts a session with `peer` from a fresh bundle of it."""
        process_prekey_bundle(
            peer.bundle(one_time=one_time, kem_type=kem_type),
            peer.address,
            self.sessions,
            self.identity_store,
            now=self.now,
            rng=self.rng,
        )

    def encrypt(self, peer: Device, plaintext: bytes) -> CiphertextMessage:
        """Encrypts for `peer`."""
        return message_encrypt(
            plaintext, peer.address, self.sessions, self.identity_store, now=self.now
        )

    def decrypt(self, peer: Device, message: CiphertextMessage) -> bytes:
        """Decrypts a message from `peer`."""
        return message_decrypt(
            message,
            peer.address,
            self.sessions,
            self.identity_store,
            self.pre_keys,
            self.signed_pre_keys,
            self.kyber_pre_keys,
            rng=self.rng,
        )
