"""A device's long-term and prekey material, and the bundle a peer fetches to reach it.

Owns: `IdentityKeyPair`, `PreKeyRecord` (one-time EC prekeys), `SignedPreKeyRecord`,
`KyberPreKeyRecord` (signed KEM prekeys, one-time or last-resort), `PreKeyBundle`, their
serialized forms, the prekey id types and the helpers that generate all of them. Knows nothing
of sessions or stores: PQXDH consumes these, the stores keep them.

Serialized records use libsignal's ``proto/storage.proto`` messages
(``IdentityKeyPairStructure``, ``PreKeyRecordStructure``, ``SignedPreKeyRecordStructure`` for
both signed EC and KEM prekeys, timestamps in milliseconds), so their layout is a documented,
versioned contract that libsignal shares (protobuf field numbers are never reused). The one
difference: an ML-KEM-1024 secret key is stored as its seed (see `kurir.crypto.kem`).

Signatures: a signed prekey's signature is XEdDSA by the identity key over the prekey's
serialized public key (33 bytes for EC, 1,569 for KEM), as libsignal checks in
``process_prekey_bundle``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NewType, Self

from kurir.crypto import protos
from kurir.crypto.address import DeviceId
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey, Rng
from kurir.crypto.errors import (
    InvalidArgumentError,
    InvalidPreKeyBundleError,
    InvalidStateError,
)
from kurir.crypto.kem import KemKeyPair, KemPublicKey, KemSecretKey, KemType

PreKeyId = NewType("PreKeyId", int)
"""Id of a one-time EC prekey (libsignal: 24 bits used, uint32 on the wire)."""

SignedPreKeyId = NewType("SignedPreKeyId", int)
"""Id of a signed EC prekey."""

KyberPreKeyId = NewType("KyberPreKeyId", int)
"""Id of a signed KEM prekey (libsignal keeps the historical name "Kyber")."""

MAX_PREKEY_ID: Final = 0xFFFFFF
"""Prekey ids are kept below 2^24, as Signal's clients do, so they wrap without surprise."""

MAX_REGISTRATION_ID: Final = 16380
"""Registration ids are 1..16380 (14 bits), libsignal's ``KeyHelper`` range."""


def _check_id(value: int) -> int:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise InvalidArgumentError("prekey id out of range")
    return value


def _timestamp_ms(now: datetime) -> int:
    if now.tzinfo is None:
        raise InvalidArgumentError("timestamps must be timezone-aware")
    return int(now.timestamp() * 1000)


def _parse_failed(what: str) -> InvalidStateError:
    return InvalidStateError(f"stored {what} does not parse")


def _stored_key_pair(proto: Any) -> KeyPair:
    # Both halves are stored; taking the public one as stored (as libsignal does) saves a scalar
    # multiplication per load. Our own store wrote both, from one key pair.
    return KeyPair(
        PrivateKey.deserialize(proto.private_key), PublicKey.deserialize(proto.public_key)
    )


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """A device's long-term identity: signs prekeys, takes part in PQXDH.

    Attributes:
        public_key: the identity key peers see and verify (safety numbers are built on it).
        private_key: the secret half; never leaves the device's store.
    """

    public_key: PublicKey
    private_key: PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, rng: Rng) -> Self:
        """Makes a new identity."""
        pair = KeyPair.generate(rng)
        return cls(pair.public_key, pair.private_key)

    def sign(self, message: bytes, rng: Rng) -> bytes:
        """XEdDSA signature by the identity key."""
        return self.private_key.calculate_signature(message, rng)

    def serialize(self) -> bytes:
        """Returns libsignal's ``IdentityKeyPairStructure``. Local encrypted storage only."""
        proto = protos.IdentityKeyPairStructure(
            public_key=self.public_key.serialize(), private_key=self.private_key.serialize()
        )
        return bytes(proto.SerializeToString())

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses `serialize`'s output.

        Raises:
            InvalidStateError: the bytes do not parse or the halves do not match.
        """
        try:
            proto = protos.parse(protos.IdentityKeyPairStructure, data)
            public = PublicKey.deserialize(proto.public_key)
            private = PrivateKey.deserialize(proto.private_key)
        except Exception as exc:
            raise _parse_failed("identity key pair") from exc
        if private.public_key() != public:
            raise InvalidStateError("stored identity key pair halves do not match")
        return cls(public, private)


@dataclass(frozen=True, slots=True)
class PreKeyRecord:
    """A one-time EC prekey with its id; deleted once a peer has used it.

    Attributes:
        id: the prekey id published with it.
        key_pair: the key pair.
    """

    id: PreKeyId
    key_pair: KeyPair = field(repr=False)

    def serialize(self) -> bytes:
        """Returns libsignal's ``PreKeyRecordStructure``."""
        proto = protos.PreKeyRecordStructure(
            id=self.id,
            public_key=self.key_pair.public_key.serialize(),
            private_key=self.key_pair.private_key.serialize(),
        )
        return bytes(proto.SerializeToString())

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses `serialize`'s output.

        Raises:
            InvalidStateError: the bytes do not parse.
        """
        try:
            proto = protos.parse(protos.PreKeyRecordStructure, data)
            pair = _stored_key_pair(proto)
        except Exception as exc:
            raise _parse_failed("prekey") from exc
        return cls(PreKeyId(proto.id), pair)


@dataclass(frozen=True, slots=True)
class SignedPreKeyRecord:
    """A medium-term EC prekey signed by the identity key.

    Attributes:
        id: the signed prekey id.
        timestamp_ms: creation time, milliseconds since the Unix epoch (for rotation).
        key_pair: the key pair.
        signature: XEdDSA signature over ``key_pair.public_key.serialize()``.
    """

    id: SignedPreKeyId
    timestamp_ms: int
    key_pair: KeyPair = field(repr=False)
    signature: bytes = field(repr=False)

    def serialize(self) -> bytes:
        """Returns libsignal's ``SignedPreKeyRecordStructure``."""
        pair = self.key_pair
        return _signed_record(self, pair.public_key.serialize(), pair.private_key.serialize())

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses `serialize`'s output.

        Raises:
            InvalidStateError: the bytes do not parse.
        """
        try:
            proto = protos.parse(protos.SignedPreKeyRecordStructure, data)
            pair = _stored_key_pair(proto)
        except Exception as exc:
            raise _parse_failed("signed prekey") from exc
        return cls(SignedPreKeyId(proto.id), proto.timestamp, pair, proto.signature)


@dataclass(frozen=True, slots=True)
class KyberPreKeyRecord:
    """A KEM prekey signed by the identity key: one-time, or the last-resort key.

    Attributes:
        id: the KEM prekey id.
        timestamp_ms: creation time, milliseconds since the Unix epoch.
        key_pair: the KEM key pair (ML-KEM-1024 for kurir's own keys).
        signature: XEdDSA signature over ``key_pair.public_key.serialize()``.
    """

    id: KyberPreKeyId
    timestamp_ms: int
    key_pair: KemKeyPair = field(repr=False)
    signature: bytes = field(repr=False)

    def serialize(self) -> bytes:
        """Returns libsignal's ``SignedPreKeyRecordStructure`` holding the KEM keys."""
        pair = self.key_pair
        return _signed_record(self, pair.public_key.serialize(), pair.secret_key.serialize())

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses `serialize`'s output.

        Raises:
            InvalidStateError: the bytes do not parse or the halves do not match.
        """
        try:
            proto = protos.parse(protos.SignedPreKeyRecordStructure, data)
            pair = KemKeyPair(
                KemPublicKey.deserialize(proto.public_key),
                KemSecretKey.deserialize(proto.private_key),
            )
        except Exception as exc:
            raise _parse_failed("KEM prekey") from exc
        return cls(KyberPreKeyId(proto.id), proto.timestamp, pair, proto.signature)


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What a peer publishes so that others can start a session with one of its devices.

    All of libsignal's bundle fields. The KEM prekey is mandatory: PQXDH is the only way to start
    a session, and a bundle without one is refused at construction. Signatures are checked by
    `kurir.crypto.session_cipher.process_prekey_bundle` (see `verify_signatures`).

    Attributes:
        registration_id: the device's registration id.
        device_id: the device the bundle belongs to.
        pre_key_id: the one-time EC prekey's id, or None when the server had none left.
        pre_key: the one-time EC prekey, None exactly when `pre_key_id` is None.
        signed_pre_key_id: the signed EC prekey's id.
        signed_pre_key: the signed EC prekey.
        signed_pre_key_signature: its XEdDSA signature by the identity key.
        identity_key: the device's identity key.
        kyber_pre_key_id: the KEM prekey's id.
        kyber_pre_key: the KEM prekey.
        kyber_pre_key_signature: its XEdDSA signature by the identity key.

    Raises:
        InvalidPreKeyBundleError: a field is missing (in particular the KEM prekey) or the
            one-time prekey and its id do not come together.
    """

    registration_id: int
    device_id: DeviceId
    pre_key_id: PreKeyId | None
    pre_key: PublicKey | None
    signed_pre_key_id: SignedPreKeyId
    signed_pre_key: PublicKey
    signed_pre_key_signature: bytes = field(repr=False)
    identity_key: PublicKey = field(repr=False)
    kyber_pre_key_id: KyberPreKeyId = KyberPreKeyId(-1)
    kyber_pre_key: KemPublicKey | None = field(default=None, repr=False)
    kyber_pre_key_signature: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.kyber_pre_key is None or self.kyber_pre_key_id < 0:
            raise InvalidPreKeyBundleError("bundle has no KEM prekey; PQXDH requires one")
        if not self.kyber_pre_key_signature:
            raise InvalidPreKeyBundleError("bundle's KEM prekey is not signed")
        if (self.pre_key_id is None) != (self.pre_key is None):
            raise InvalidPreKeyBundleError("one-time prekey and its id must come together")
        if not self.signed_pre_key_signature:
            raise InvalidPreKeyBundleError("bundle's signed prekey is not signed")
        for value in (
            self.registration_id,
            self.signed_pre_key_id,
            self.kyber_pre_key_id,
            self.pre_key_id or 0,
        ):
            if not 0 <= value <= 0xFFFF_FFFF:
                raise InvalidPreKeyBundleError("bundle id out of range")

    @property
    def kem_pre_key(self) -> KemPublicKey:
        """The KEM prekey (never None once constructed)."""
        if self.kyber_pre_key is None:  # unreachable: refused in __post_init__
            raise InvalidPreKeyBundleError("bundle has no KEM prekey")
        return self.kyber_pre_key

    def verify_signatures(self) -> None:
        """Checks both prekey signatures against the identity key.

        Raises:
            InvalidPreKeyBundleError: a signature does not verify.
        """
        if not self.identity_key.verify_signature(
            self.signed_pre_key.serialize(), self.signed_pre_key_signature
        ):
            raise InvalidPreKeyBundleError("signed prekey signature does not verify")
        if not self.identity_key.verify_signature(
            self.kem_pre_key.serialize(), self.kyber_pre_key_signature
        ):
            raise InvalidPreKeyBundleError("KEM prekey signature does not verify")


# --- generation -------------------------------------------------------------------------------


def generate_registration_id(rng: Rng) -> int:
    """A random registration id in 1..16380 (libsignal's ``KeyHelper`` range)."""
    return 1 + int.from_bytes(rng(4), "big") % MAX_REGISTRATION_ID


def generate_pre_keys(start: PreKeyId, count: int, rng: Rng) -> list[PreKeyRecord]:
    """Makes `count` one-time EC prekeys with consecutive ids from `start` (wrapping at 2^24)."""
    if count < 0:
        raise InvalidArgumentError("count must not be negative")
    return [
        PreKeyRecord(PreKeyId((start + i - 1) % MAX_PREKEY_ID + 1), KeyPair.generate(rng))
        for i in range(count)
    ]


def generate_signed_pre_key(
    identity: IdentityKeyPair, key_id: SignedPreKeyId, *, now: datetime, rng: Rng
) -> SignedPreKeyRecord:
    """Makes a signed EC prekey.

    Args:
        identity: the identity that signs it.
        key_id: its id.
        now: the current time (timezone-aware), recorded for rotation.
        rng: randomness for the key and the signature.
    """
    pair = KeyPair.generate(rng)
    signature = identity.sign(pair.public_key.serialize(), rng)
    return SignedPreKeyRecord(
        SignedPreKeyId(_check_id(key_id)), _timestamp_ms(now), pair, signature
    )


def generate_kyber_pre_key(
    identity: IdentityKeyPair,
    key_id: KyberPreKeyId,
    *,
    now: datetime,
    rng: Rng,
    kem_type: KemType = KemType.MLKEM1024,
) -> KyberPreKeyRecord:
    """Makes a signed KEM prekey (one-time or last-resort: the server decides how it is used).

    Args:
        identity: the identity that signs it.
        key_id: its id.
        now: the current time (timezone-aware).
        rng: randomness for the key and the signature.
        kem_type: ML-KEM-1024 for kurir peers; Kyber1024 for a bundle a libsignal peer must
            accept (libsignal releases refuse ML-KEM keys; see `kurir.crypto.kem`).
    """
    pair = KemKeyPair.generate(rng, kem_type)
    signature = identity.sign(pair.public_key.serialize(), rng)
    return KyberPreKeyRecord(KyberPreKeyId(_check_id(key_id)), _timestamp_ms(now), pair, signature)


def random_id(rng: Rng) -> int:
    """A random prekey id in 1..2^24-1, to start a fresh sequence of ids."""
    return 1 + int.from_bytes(rng(4), "big") % (MAX_PREKEY_ID - 1)


def _signed_record(
    record: SignedPreKeyRecord | KyberPreKeyRecord, public: bytes, private: bytes
) -> bytes:
    """libsignal's ``SignedPreKeyRecordStructure``, the layout of both signed prekey kinds."""
    proto = protos.SignedPreKeyRecordStructure(
        id=record.id,
        public_key=public,
        private_key=private,
        signature=record.signature,
        timestamp=record.timestamp_ms,
    )
    return bytes(proto.SerializeToString())
