"""Sender Keys: group encryption with one signed symmetric chain per sender and group.

Owns: the two wire messages (`SenderKeyDistributionMessage`, `SenderKeyMessage`), the
`SenderKeyStore` Protocol with its in-memory reference, and the operations
`create_sender_key_distribution_message`, `rotate_sender_key`,
`process_sender_key_distribution_message`, `group_encrypt` and `group_decrypt`. The chains
themselves live in `kurir.crypto.sender_key_record`. Knows nothing of how a distribution
message reaches the members (kurir sends it inside a 1:1 session) nor of group membership.

Wire formats (libsignal ``rust/protocol/src/protocol.rs``, ``proto/wire.proto``):

* both messages start with one version byte ``(3 << 4) | 3``, then a protobuf;
* ``SenderKeyMessage`` is ``version || SenderKeyMessage{distribution_uuid, chain_id, iteration,
  ciphertext} || XEdDSA signature`` (64 bytes) over everything before the signature, made with
  the chain's signing key;
* ``SenderKeyDistributionMessage`` is ``version || SenderKeyDistributionMessage{
  distribution_uuid, chain_id, iteration, chain_key, signing_key}`` (unsigned: it travels inside
  an authenticated 1:1 session).

The ciphertext is AES-256-CBC with PKCS#7 padding under the iteration's message key (see
`kurir.crypto.sender_key_record`). Decryption checks, in libsignal's order: known chain id,
message version, signature, then the iteration (duplicate, skipped, or at most
`MAX_FORWARD_JUMPS` ahead); the store is written only after the plaintext is recovered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Final, Protocol, Self

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kurir.crypto import protos
from kurir.crypto.address import ProtocolAddress
from kurir.crypto.curve import KEY_LENGTH, SIGNATURE_LENGTH, KeyPair, PublicKey, Rng
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidSignatureError,
    InvalidStateError,
    LegacyMessageError,
    NoSenderKeyStateError,
    UnrecognizedVersionError,
)
from kurir.crypto.sender_key_record import (
    MAX_FORWARD_JUMPS,
    SENDER_KEY_VERSION,
    SenderChainKey,
    SenderKeyRecord,
    SenderKeyState,
    SenderMessageKey,
)

_VERSION_BYTE: Final = (SENDER_KEY_VERSION << 4) | SENDER_KEY_VERSION
_AES_BLOCK: Final = 16
_MAX_UINT32: Final = 2**32 - 1


# --- libsignal proto/wire.proto (proto2) ------------------------------------------------------


def _check_version(data: bytes) -> int:
    version = data[0] >> 4
    if version < SENDER_KEY_VERSION:
        raise LegacyMessageError(version)
    if version > SENDER_KEY_VERSION:
        raise UnrecognizedVersionError(version)
    return version


def _uuid_from(raw: bytes | None) -> uuid.UUID:
    if raw is None or len(raw) != 16:
        raise InvalidMessageError("distribution id must be 16 bytes")
    return uuid.UUID(bytes=raw)


def _uint32(value: int | None, name: str) -> int:
    if value is None or not 0 <= value <= _MAX_UINT32:
        raise InvalidMessageError(f"{name} missing or out of range")
    return int(value)


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderKeyMessage:
    """One signed, encrypted group message.

    Attributes:
        message_version: the version (3).
        distribution_id: the group's distribution id.
        chain_id: the sender chain that encrypted it.
        iteration: the chain position of its key.
        ciphertext: AES-256-CBC ciphertext.
        serialized: the exact bytes on the wire (signature included).
    """

    message_version: int
    distribution_id: uuid.UUID
    chain_id: int
    iteration: int
    ciphertext: bytes
    serialized: bytes

    @classmethod
    def create(
        cls,
        *,
        distribution_id: uuid.UUID,
        chain_id: int,
        iteration: int,
        ciphertext: bytes,
        signing_key: KeyPair,
        rng: Rng,
    ) -> Self:
        """Builds and signs a message (XEdDSA over version byte and protobuf)."""
        body = protos.SenderKeyMessageProto(
            distribution_uuid=distribution_id.bytes,
            chain_id=_uint32(chain_id, "chain id"),
            iteration=_uint32(iteration, "iteration"),
            ciphertext=ciphertext,
        ).SerializeToString()
        signed = bytes((_VERSION_BYTE,)) + body
        signature = signing_key.calculate_signature(signed, rng)
        return cls(
            SENDER_KEY_VERSION, distribution_id, chain_id, iteration, ciphertext, signed + signature
        )

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a message (the signature is checked later, against the sender's chain).

        Raises:
            InvalidMessageError: too short or malformed.
            LegacyMessageError, UnrecognizedVersionError: another version.
        """
        if len(data) < 1 + SIGNATURE_LENGTH:
            raise InvalidMessageError("sender key message too short")
        version = _check_version(data)
        try:
            proto = protos.parse(protos.SenderKeyMessageProto, data[1:-SIGNATURE_LENGTH])
        except ValueError as exc:
            raise InvalidMessageError("malformed sender key message") from exc
        has = proto.HasField
        if not has("ciphertext"):
            raise InvalidMessageError("sender key message without ciphertext")
        return cls(
            message_version=version,
            distribution_id=_uuid_from(
                proto.distribution_uuid if has("distribution_uuid") else None
            ),
            chain_id=_uint32(proto.chain_id if has("chain_id") else None, "chain id"),
            iteration=_uint32(proto.iteration if has("iteration") else None, "iteration"),
            ciphertext=proto.ciphertext,
            serialized=bytes(data),
        )

    def verify_signature(self, signing_key: PublicKey) -> bool:
        """Checks the trailing XEdDSA signature with the chain's public signing key."""
        return signing_key.verify_signature(
            self.serialized[:-SIGNATURE_LENGTH], self.serialized[-SIGNATURE_LENGTH:]
        )


@dataclass(frozen=True, slots=True)
class SenderKeyDistributionMessage:
    """What a sender gives each member (inside a 1:1 session) so it can read the sender's chain.

    Attributes:
        message_version: the version (3).
        distribution_id: the group's distribution id.
        chain_id: the sender chain's id.
        iteration: the chain position of `chain_key`.
        chain_key: the 32-byte chain key at `iteration`.
        signing_key: the chain's public signing key.
        serialized: the exact bytes on the wire.
    """

    message_version: int
    distribution_id: uuid.UUID
    chain_id: int
    iteration: int
    chain_key: bytes
    signing_key: PublicKey
    serialized: bytes

    @classmethod
    def create(
        cls,
        *,
        distribution_id: uuid.UUID,
        chain_id: int,
        iteration: int,
        chain_key: bytes,
        signing_key: PublicKey,
    ) -> Self:
        """Builds a distribution message."""
        body = protos.SenderKeyDistributionMessageProto(
            distribution_uuid=distribution_id.bytes,
            chain_id=_uint32(chain_id, "chain id"),
            iteration=_uint32(iteration, "iteration"),
            chain_key=chain_key,
            signing_key=signing_key.serialize(),
        ).SerializeToString()
        return cls(
            SENDER_KEY_VERSION,
            distribution_id,
            chain_id,
            iteration,
            chain_key,
            signing_key,
            bytes((_VERSION_BYTE,)) + body,
        )

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a distribution message.

        Raises:
            InvalidMessageError: too short, malformed, or a key of the wrong length.
            LegacyMessageError, UnrecognizedVersionError: another version.
            InvalidKeyError: the signing key is not a Curve25519 key.
        """
        if len(data) < 1 + 2 * KEY_LENGTH:
            raise InvalidMessageError("sender key distribution message too short")
        version = _check_version(data)
        try:
            proto = protos.parse(protos.SenderKeyDistributionMessageProto, data[1:])
        except ValueError as exc:
            raise InvalidMessageError("malformed sender key distribution message") from exc
        has = proto.HasField
        if not has("chain_key") or len(proto.chain_key) != KEY_LENGTH:
            raise InvalidMessageError("chain key must be 32 bytes")
        if not has("signing_key") or len(proto.signing_key) != 1 + KEY_LENGTH:
            raise InvalidMessageError("signing key must be 33 bytes")
        return cls(
            message_version=version,
            distribution_id=_uuid_from(
                proto.distribution_uuid if has("distribution_uuid") else None
            ),
            chain_id=_uint32(proto.chain_id if has("chain_id") else None, "chain id"),
            iteration=_uint32(proto.iteration if has("iteration") else None, "iteration"),
            chain_key=proto.chain_key,
            signing_key=PublicKey.deserialize(proto.signing_key),
            serialized=bytes(data),
        )


# --- storage ----------------------------------------------------------------------------------


class SenderKeyStore(Protocol):
    """Where sender key records live, keyed by (sender device, distribution id).

    The sender's own chain is stored under its own address, like libsignal.
    """

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Saves the record, replacing any previous one."""
        ...

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """Returns the record, or None if there is none."""
        ...


class InMemorySenderKeyStore:
    """The reference `SenderKeyStore`: a dict of records.

    Records are immutable, so holding them as they are is as safe as holding their bytes.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[ProtocolAddress, uuid.UUID], SenderKeyRecord] = {}

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Saves the record, replacing any previous one."""
        self._records[(sender, distribution_id)] = record

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """Returns the record, or None if there is none."""
        return self._records.get((sender, distribution_id))


# --- operations -------------------------------------------------------------------------------


def _aes_cbc_encrypt(plaintext: bytes, key: SenderMessageKey) -> bytes:
    iv, cipher_key = key.derive()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def _aes_cbc_decrypt(ciphertext: bytes, key: SenderMessageKey) -> bytes:
    if not ciphertext or len(ciphertext) % _AES_BLOCK:
        raise InvalidMessageError("sender key ciphertext is not a whole number of blocks")
    iv, cipher_key = key.derive()
    decryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise InvalidMessageError("sender key decryption failed") from exc


def create_sender_key_distribution_message(
    sender: ProtocolAddress,
    distribution_id: uuid.UUID,
    store: SenderKeyStore,
    rng: Rng,
) -> SenderKeyDistributionMessage:
    """Returns our distribution message for a group, creating our chain on first use.

    Send the result to every member device inside a 1:1 session; they pass it to
    `process_sender_key_distribution_message`. Then encrypt with `group_encrypt`.

    Args:
        sender: our own address (the key under which our chain is stored).
        distribution_id: the group's distribution id (a random UUID chosen per group).
        store: where our chain is kept.
        rng: randomness for a new chain id, chain key and signing key.

    Raises:
        InvalidStateError: the stored record is unusable.
    """
    record = store.load_sender_key(sender, distribution_id)
    if record is None:
        record = _new_chain(SenderKeyRecord(), rng)
        store.store_sender_key(sender, distribution_id, record)
    return _distribution_message(record, distribution_id)


def rotate_sender_key(
    sender: ProtocolAddress,
    distribution_id: uuid.UUID,
    store: SenderKeyStore,
    rng: Rng,
) -> SenderKeyDistributionMessage:
    """Starts a new chain of ours for a group and returns its distribution message.

    Rotate when a member leaves (it must not read what follows) or when our chain may be
    compromised; send the result to the remaining members as after
    `create_sender_key_distribution_message`. Later `group_encrypt` calls use the new chain.

    Args:
        sender: our own address.
        distribution_id: the group's distribution id.
        store: where our chain is kept.
        rng: randomness for the new chain id, chain key and signing key.
    """
    record = _new_chain(store.load_sender_key(sender, distribution_id) or SenderKeyRecord(), rng)
    store.store_sender_key(sender, distribution_id, record)
    return _distribution_message(record, distribution_id)


def _new_chain(record: SenderKeyRecord, rng: Rng) -> SenderKeyRecord:
    chain_id = int.from_bytes(rng(4), "little") >> 1  # 31 bits, as libsignal-java expects
    chain_key = rng(KEY_LENGTH)
    signing = KeyPair.generate(rng)
    state = SenderKeyState(
        message_version=SENDER_KEY_VERSION,
        chain_id=chain_id,
        chain_key=SenderChainKey(0, chain_key),
        signing_key=signing.public_key,
        signing_private_key=signing.private_key,
    )
    return record.with_state_added(state)


def _distribution_message(
    record: SenderKeyRecord, distribution_id: uuid.UUID
) -> SenderKeyDistributionMessage:
    state = record.current_state()
    if state is None:
        raise InvalidStateError(f"empty sender key record for distribution {distribution_id}")
    return SenderKeyDistributionMessage.create(
        distribution_id=distribution_id,
        chain_id=state.chain_id,
        iteration=state.chain_key.iteration,
        chain_key=state.chain_key.seed,
        signing_key=state.signing_key,
    )


def process_sender_key_distribution_message(
    sender: ProtocolAddress,
    message: SenderKeyDistributionMessage,
    store: SenderKeyStore,
) -> None:
    """Records a member's chain so that its group messages can be decrypted.

    Args:
        sender: the device that sent the distribution message (authenticated by the 1:1
            session it arrived in).
        message: the parsed distribution message.
        store: where the chain is kept.

    Raises:
        InvalidStateError: the stored record is unusable.
    """
    record = store.load_sender_key(sender, message.distribution_id) or SenderKeyRecord()
    state = SenderKeyState(
        message_version=message.message_version,
        chain_id=message.chain_id,
        chain_key=SenderChainKey(message.iteration, message.chain_key),
        signing_key=message.signing_key,
    )
    store.store_sender_key(sender, message.distribution_id, record.with_state_added(state))


def group_encrypt(
    store: SenderKeyStore,
    sender: ProtocolAddress,
    distribution_id: uuid.UUID,
    plaintext: bytes,
    rng: Rng,
) -> SenderKeyMessage:
    """Encrypts one group message with our chain and advances it.

    Args:
        store: where our chain is kept.
        sender: our own address.
        distribution_id: the group's distribution id.
        plaintext: the message.
        rng: randomness for the XEdDSA signature.

    Returns:
        The signed message; send ``.serialized`` to every member (usually sealed).

    Raises:
        NoSenderKeyStateError: no chain yet; call `create_sender_key_distribution_message`.
        InvalidStateError: the record holds no private signing key, or is exhausted.
    """
    record = store.load_sender_key(sender, distribution_id)
    state = None if record is None else record.current_state()
    if record is None or state is None:
        raise NoSenderKeyStateError(f"no sender key state for distribution {distribution_id}")
    if state.signing_private_key is None:
        raise InvalidStateError(f"no private signing key for distribution {distribution_id}")
    message_key = state.chain_key.message_key()
    message = SenderKeyMessage.create(
        distribution_id=distribution_id,
        chain_id=state.chain_id,
        iteration=message_key.iteration,
        ciphertext=_aes_cbc_encrypt(plaintext, message_key),
        signing_key=KeyPair(state.signing_private_key, state.signing_key),
        rng=rng,
    )
    advanced = replace(state, chain_key=state.chain_key.next())
    store.store_sender_key(sender, distribution_id, record.with_state_replaced(advanced))
    return message


def group_decrypt(ciphertext: bytes, store: SenderKeyStore, sender: ProtocolAddress) -> bytes:
    """Decrypts one group message from `sender`.

    Args:
        ciphertext: the serialized `SenderKeyMessage`.
        store: where the sender's chain is kept.
        sender: the device that sent it (from the 1:1 envelope or the sealed-sender
            certificate).

    Returns:
        The plaintext. The store is updated only on success.

    Raises:
        InvalidMessageError (and its version subclasses): malformed, too far ahead, or the
            ciphertext does not decrypt.
        NoSenderKeyStateError: no distribution message for this sender, group or chain yet;
            ask the sender to resend it.
        InvalidSignatureError: the signature does not verify with the chain's signing key.
        DuplicateMessageError: this iteration was already decrypted (or its key was dropped).
    """
    message = SenderKeyMessage.deserialize(ciphertext)
    distribution_id = message.distribution_id
    record = store.load_sender_key(sender, distribution_id)
    if record is None:
        raise NoSenderKeyStateError(f"no sender key state for distribution {distribution_id}")
    state = record.state_for_chain_id(message.chain_id)
    if state is None:
        raise NoSenderKeyStateError(
            f"no sender key chain {message.chain_id} for distribution {distribution_id}"
        )
    if message.message_version != state.message_version:
        raise UnrecognizedVersionError(message.message_version)
    if not message.verify_signature(state.signing_key):
        raise InvalidSignatureError("sender key message signature does not verify")

    current = state.chain_key.iteration
    if message.iteration < current:
        taken = state.take_message_key(message.iteration)
        if taken is None:
            raise DuplicateMessageError(
                f"sender key iteration {message.iteration} already used (chain at {current})"
            )
        new_state, message_key = taken
    else:
        if message.iteration - current > MAX_FORWARD_JUMPS:
            raise InvalidMessageError("sender key message from too far into the future")
        new_state, message_key = state.advance_to(message.iteration)

    plaintext = _aes_cbc_decrypt(message.ciphertext, message_key)
    store.store_sender_key(sender, distribution_id, record.with_state_replaced(new_state))
    return plaintext
