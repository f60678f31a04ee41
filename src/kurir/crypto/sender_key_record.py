"""Sender Key state: the per-(sender, group) chains of the Sender Keys group scheme.

Owns: `SenderChainKey`, `SenderMessageKey`, `SenderKeyState`, `SenderKeyRecord` and the
record's serialized form. Knows nothing of messages on the wire, of stores or of who the
sender is: `kurir.crypto.sender_keys` drives these objects.

Key schedule (libsignal ``rust/protocol/src/sender_keys.rs``):

* the chain key advances as ``HMAC-SHA256(chain_key, 0x02)``;
* the message-key seed of an iteration is ``HMAC-SHA256(chain_key, 0x01)``;
* a message key is ``HKDF-SHA256(ikm=seed, salt=none, info="WhisperGroup")`` expanded to 48
  bytes: IV (16) then AES-256 key (32).

A record keeps at most `MAX_SENDER_KEY_STATES` states (newest first) and, per state, at most
`MAX_MESSAGE_KEYS` skipped message keys (oldest dropped first), as libsignal does.

Every object here is immutable; operations return updated copies, so a failed decryption
leaves the stored record untouched by construction.

Serialized record: one version byte (`RECORD_VERSION`) followed by libsignal's
``SenderKeyRecordStructure`` protobuf (``proto/storage.proto``), so libsignal's own records can
be imported with `SenderKeyRecord.from_libsignal` and exported with `to_libsignal`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace
from typing import Any, Final, Self

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kurir.crypto import protos
from kurir.crypto.curve import PrivateKey, PublicKey
from kurir.crypto.errors import InvalidKeyError, InvalidStateError

MAX_SENDER_KEY_STATES: Final = 5
"""States kept per (sender, distribution id); libsignal ``consts::MAX_SENDER_KEY_STATES``."""

MAX_MESSAGE_KEYS: Final = 2000
"""Skipped message keys kept per state; libsignal ``consts::MAX_MESSAGE_KEYS``."""

MAX_FORWARD_JUMPS: Final = 25_000
"""Largest iteration jump accepted in one message; libsignal ``consts::MAX_FORWARD_JUMPS``."""

SENDER_KEY_VERSION: Final = 3
"""The Sender Key message version (libsignal ``SENDERKEY_MESSAGE_CURRENT_VERSION``)."""

RECORD_VERSION: Final = 1
"""Version byte in front of a serialized `SenderKeyRecord`."""

_MESSAGE_KEY_SEED: Final = b"\x01"
_CHAIN_KEY_SEED: Final = b"\x02"
_MAX_ITERATION: Final = 2**32 - 1
_HKDF_INFO: Final = b"WhisperGroup"


# --- keys -------------------------------------------------------------------------------------


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")  # one-shot OpenSSL HMAC


@dataclass(frozen=True, slots=True)
class SenderMessageKey:
    """The key of one Sender Key message, kept as its seed.

    Attributes:
        iteration: the chain position this key encrypts.
        seed: the 32-byte seed the IV and cipher key are derived from.
    """

    iteration: int
    seed: bytes = field(repr=False)

    def derive(self) -> tuple[bytes, bytes]:
        """Returns ``(iv, cipher_key)``: 16 and 32 bytes of HKDF(seed, info="WhisperGroup")."""
        derived = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=_HKDF_INFO).derive(
            self.seed
        )
        return derived[:16], derived[16:]


@dataclass(frozen=True, slots=True)
class SenderChainKey:
    """A position in a sender's chain.

    Attributes:
        iteration: the number of the next message this chain key encrypts.
        seed: the 32-byte chain key.
    """

    iteration: int
    seed: bytes = field(repr=False)

    def message_key(self) -> SenderMessageKey:
        """Returns the message key of this iteration."""
        return SenderMessageKey(self.iteration, _hmac_sha256(self.seed, _MESSAGE_KEY_SEED))

    def next(self) -> SenderChainKey:
        """Returns the chain key of the next iteration.

        Raises:
            InvalidStateError: the chain is exhausted (iteration 2^32 - 1).
        """
        if self.iteration >= _MAX_ITERATION:
            raise InvalidStateError("sender chain is too long")
        return SenderChainKey(self.iteration + 1, _hmac_sha256(self.seed, _CHAIN_KEY_SEED))


# --- state and record -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderKeyState:
    """One sender chain: what a distribution message establishes.

    Attributes:
        message_version: the Sender Key message version (3).
        chain_id: the chain's 31-bit random id, carried in every message.
        chain_key: the current chain key (the next iteration to use or expect).
        signing_key: the public key that signs the chain's messages.
        signing_private_key: the matching private key; only the sender's own state has it.
        message_keys: skipped message keys, oldest first, at most `MAX_MESSAGE_KEYS`.
    """

    message_version: int
    chain_id: int
    chain_key: SenderChainKey
    signing_key: PublicKey
    signing_private_key: PrivateKey | None = field(default=None, repr=False)
    message_keys: tuple[SenderMessageKey, ...] = field(default=(), repr=False)

    def take_message_key(self, iteration: int) -> tuple[Self, SenderMessageKey] | None:
        """Removes the skipped key of `iteration`, if held; returns the new state and the key."""
        for index, key in enumerate(self.message_keys):
            if key.iteration == iteration:
                rest = self.message_keys[:index] + self.message_keys[index + 1 :]
                return replace(self, message_keys=rest), key
        return None

    def advance_to(self, iteration: int) -> tuple[Self, SenderMessageKey]:
        """Moves the chain to just past `iteration`, keeping the skipped keys.

        The caller has checked ``chain_key.iteration <= iteration`` and the jump limit.

        Returns:
            The new state and the message key of `iteration`.
        """
        chain = self.chain_key
        skipped: list[SenderMessageKey] = []
        while chain.iteration < iteration:
            skipped.append(chain.message_key())
            chain = chain.next()
        key = chain.message_key()
        kept = (self.message_keys + tuple(skipped))[-MAX_MESSAGE_KEYS:]
        return replace(self, chain_key=chain.next(), message_keys=kept), key

    def _write(self, proto: Any) -> None:
        # Fills an empty ``SenderKeyStateStructure`` (proto3: zero values are left out, so the
        # bytes match libsignal's).
        proto.chain_id = self.chain_id
        proto.sender_chain_key.iteration = self.chain_key.iteration
        proto.sender_chain_key.seed = self.chain_key.seed
        proto.sender_signing_key.public = self.signing_key.serialize()
        if self.signing_private_key is not None:
            proto.sender_signing_key.private = self.signing_private_key.serialize()
        if self.message_keys:
            message_key = protos.SenderKeyStateStructure.SenderMessageKey
            proto.sender_message_keys.extend(
                [message_key(iteration=key.iteration, seed=key.seed) for key in self.message_keys]
            )
        proto.message_version = self.message_version

    @classmethod
    def _from_proto(cls, proto: Any) -> Self:
        if not (proto.HasField("sender_chain_key") and proto.HasField("sender_signing_key")):
            raise InvalidStateError("sender key state lacks its chain or signing key")
        chain = proto.sender_chain_key
        signing = proto.sender_signing_key
        try:
            public = PublicKey.deserialize(signing.public)
            private = PrivateKey.deserialize(signing.private) if signing.private else None
        except InvalidKeyError as exc:
            raise InvalidStateError("sender key state has an invalid signing key") from exc
        return cls(
            message_version=proto.message_version or SENDER_KEY_VERSION,  # 0 means 3
            chain_id=proto.chain_id,
            chain_key=SenderChainKey(chain.iteration, chain.seed),
            signing_key=public,
            signing_private_key=private,
            message_keys=tuple(
                SenderMessageKey(key.iteration, key.seed) for key in proto.sender_message_keys
            ),
        )


@dataclass(frozen=True, slots=True)
class SenderKeyRecord:
    """Every chain known for one (sender, distribution id), newest first.

    Attributes:
        states: at most `MAX_SENDER_KEY_STATES` states; ``states[0]`` is the one a sender
            encrypts with.
    """

    states: tuple[SenderKeyState, ...] = ()

    def current_state(self) -> SenderKeyState | None:
        """Returns the newest state, or None for an empty record."""
        return self.states[0] if self.states else None

    def state_for_chain_id(self, chain_id: int) -> SenderKeyState | None:
        """Returns the state with this chain id, if any."""
        for state in self.states:
            if state.chain_id == chain_id:
                return state
        return None

    def with_state_replaced(self, new: SenderKeyState) -> Self:
        """Returns a copy with the state of ``new.chain_id`` replaced in place by `new`."""
        states = tuple(new if s.chain_id == new.chain_id else s for s in self.states)
        return replace(self, states=states)

    def with_state_added(self, state: SenderKeyState) -> Self:
        """Adds a chain as libsignal's ``add_sender_key_state`` does.

        A state with the same chain id and signing key is kept as it is (with its progress)
        and moved to the front; a state with the same chain id but another signing key is
        dropped; the oldest states beyond `MAX_SENDER_KEY_STATES` are evicted.
        """
        existing = next(
            (
                s
                for s in self.states
                if s.chain_id == state.chain_id and s.signing_key == state.signing_key
            ),
            None,
        )
        others = tuple(s for s in self.states if s.chain_id != state.chain_id)
        front = existing if existing is not None else state
        return replace(self, states=(front, *others[: MAX_SENDER_KEY_STATES - 1]))

    def to_libsignal(self) -> bytes:
        """Returns libsignal's ``SenderKeyRecordStructure`` bytes (no kurir version byte)."""
        proto = protos.SenderKeyRecordStructure()
        for state in self.states:
            state._write(proto.sender_key_states.add())
        return bytes(proto.SerializeToString())

    @classmethod
    def from_libsignal(cls, data: bytes) -> Self:
        """Parses libsignal's ``SenderKeyRecordStructure`` bytes.

        Raises:
            InvalidStateError: malformed record.
        """
        try:
            proto = protos.parse(protos.SenderKeyRecordStructure, data)
        except ValueError as exc:
            raise InvalidStateError("malformed sender key record") from exc
        return cls(tuple(SenderKeyState._from_proto(state) for state in proto.sender_key_states))

    def serialize(self) -> bytes:
        """Returns the versioned record to store: `RECORD_VERSION` then libsignal's protobuf."""
        return bytes((RECORD_VERSION,)) + self.to_libsignal()

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses what `serialize` wrote.

        Raises:
            InvalidStateError: empty, of an unknown version, or malformed.
        """
        if not data:
            raise InvalidStateError("empty sender key record")
        if data[0] != RECORD_VERSION:
            raise InvalidStateError(f"unknown sender key record version {data[0]}")
        return cls.from_libsignal(data[1:])
