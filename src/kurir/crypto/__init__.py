"""kurir.crypto: the Signal protocol, sans-I/O and synchronous, compatible with libsignal.

The 1:1 core re-exported here: keys (`curve`, `kem`, `prekeys`), messages (`messages`), storage
Protocols (`stores`), PQXDH (`pqxdh`), the Double Ratchet (`ratchet`), session records
(`session`) and the public operations (`session_cipher`). Errors live in `kurir.crypto.errors`.
"""

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey, Rng
from kurir.crypto.kem import KemKeyPair, KemPublicKey, KemSecretKey, KemType
from kurir.crypto.messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
    deserialize_ciphertext,
)
from kurir.crypto.prekeys import (
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
)
from kurir.crypto.session import SessionRecord, SessionState
from kurir.crypto.session_cipher import (
    message_decrypt,
    message_decrypt_prekey,
    message_decrypt_signal,
    message_encrypt,
    process_prekey_bundle,
)
from kurir.crypto.stores import (
    Direction,
    IdentityKeyStore,
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)

__all__ = [
    "CiphertextMessage",
    "CiphertextMessageType",
    "DeviceId",
    "Direction",
    "IdentityKeyPair",
    "IdentityKeyStore",
    "InMemoryIdentityKeyStore",
    "InMemoryKyberPreKeyStore",
    "InMemoryPreKeyStore",
    "InMemorySessionStore",
    "InMemorySignedPreKeyStore",
    "KemKeyPair",
    "KemPublicKey",
    "KemSecretKey",
    "KemType",
    "KeyPair",
    "KyberPreKeyId",
    "KyberPreKeyRecord",
    "KyberPreKeyStore",
    "PreKeyBundle",
    "PreKeyId",
    "PreKeyRecord",
    "PreKeySignalMessage",
    "PreKeyStore",
    "PrivateKey",
    "ProtocolAddress",
    "PublicKey",
    "Rng",
    "SessionRecord",
    "SessionState",
    "SessionStore",
    "SignalMessage",
    "SignedPreKeyId",
    "SignedPreKeyRecord",
    "SignedPreKeyStore",
    "deserialize_ciphertext",
    "generate_kyber_pre_key",
    "generate_pre_keys",
    "generate_registration_id",
    "generate_signed_pre_key",
    "message_decrypt",
    "message_decrypt_prekey",
    "message_decrypt_signal",
    "message_encrypt",
    "process_prekey_bundle",
]
