"""Session state and session records: what a device remembers about one peer device.

Owns: `SessionState` (one Double Ratchet session: root key, sending chain, up to five receiving
chains with their skipped message keys, the unacknowledged PQXDH data), `SessionRecord` (the
current state plus up to 40 previous ones, Sesame-style), their serialized form, and the record
rules: promotion, archiving, trial decryption over the states, and staleness. Knows nothing of
KDFs or message formats: the ratchet (`kurir.crypto.ratchet`) reads and writes the fields, and
`trial_decrypt` takes the per-state decryption as a function.

Sesame (Signal's "The Sesame Algorithm", section 3) in libsignal's form
(``rust/protocol/src/state/session.rs`` and ``session_cipher.rs``):

* each remote device has one record; a new session (from a bundle or from a PreKeySignalMessage)
  becomes current and the old current state is archived at the front of the previous states;
  at most `ARCHIVED_STATES_MAX_LENGTH` are kept, the oldest dropped;
* a received message is tried on the current state, then on each previous state in order; the
  state that decrypts it becomes current ("promotion"), which is how simultaneous initiation
  settles: both sides end up on the session the last decrypted message belonged to;
* a session whose first message has not been answered for `MAX_UNACKNOWLEDGED_SESSION_AGE`
  is stale: it is not used for sending (the caller fetches a new bundle).

Serialized form: libsignal's ``proto/storage.proto`` ``RecordStructure`` / ``SessionStructure``,
field for field (skipped message keys stored as seeds; an empty ``pq_ratchet_state`` means "no
SPQR"). We chose libsignal's layout over one of our own because it is already a versioned
contract (``session_version`` inside, protobuf field numbers never reused), and because
libsignal itself can then load a kurir record: the interop tests check our state field by field
through libsignal, have libsignal continue a session from a kurir record, and check that kurir
writes libsignal's own records back byte for byte. The codec is Google ``protobuf`` (upb, see
`kurir.crypto.protos`); proto3 zero values are left out, as prost leaves them out (records
written by earlier kurir versions, which wrote some zero values, load unchanged). Unknown or
corrupt records raise `InvalidStateError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Self, TypeVar

from kurir.crypto import protos
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidStateError,
    SignalProtocolError,
)

MAX_MESSAGE_KEYS: Final = 2000
"""Skipped message keys kept per receiving chain (libsignal ``consts.rs``)."""

MAX_RECEIVER_CHAINS: Final = 5
"""Receiving chains kept per session; the oldest is dropped."""

ARCHIVED_STATES_MAX_LENGTH: Final = 40
"""Previous session states kept per record."""

MAX_UNACKNOWLEDGED_SESSION_AGE: Final = timedelta(days=30)
"""A session whose PreKeySignalMessage has had no answer for this long is not used to send."""

_T = TypeVar("_T")


# --- state ------------------------------------------------------------------------------------


@dataclass(slots=True)
class ChainKey:
    """A symmetric-ratchet chain key and the index of the next message key it yields.

    Attributes:
        key: 32 bytes.
        index: the counter of the next message.
    """

    key: bytes = field(repr=False)
    index: int


@dataclass(slots=True)
class SenderChain:
    """The sending half of the ratchet.

    Attributes:
        ratchet_key: our current ratchet key pair (its public key heads every message).
        chain_key: the next sending chain key.
    """

    ratchet_key: KeyPair = field(repr=False)
    chain_key: ChainKey


@dataclass(slots=True)
class ReceiverChain:
    """One receiving chain, named by the peer's ratchet public key.

    Attributes:
        ratchet_key: the peer's ratchet public key of this chain.
        chain_key: the next receiving chain key.
        message_keys: skipped message keys as ``(counter, seed)``, newest first; the 32-byte
            seed is ``HMAC(chain_key, 0x01)`` of that counter, expanded only when used.
    """

    ratchet_key: PublicKey
    chain_key: ChainKey
    message_keys: list[tuple[int, bytes]] = field(default_factory=list, repr=False)


@dataclass(slots=True)
class PendingPreKey:
    """What the initiator repeats in every message until the peer answers (PQXDH's inputs).

    Attributes:
        pre_key_id: the peer's one-time EC prekey used, or None.
        signed_pre_key_id: the peer's signed EC prekey used.
        base_key: our PQXDH ephemeral public key.
        timestamp_s: when the session was created (seconds since the Unix epoch).
        kyber_pre_key_id: the peer's KEM prekey used.
        kyber_ciphertext: the KEM ciphertext (with its type byte).
    """

    pre_key_id: int | None
    signed_pre_key_id: int
    base_key: PublicKey
    timestamp_s: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes = field(repr=False)


@dataclass(slots=True)
class SessionState:
    """One Double Ratchet session with one peer device.

    Mutable on purpose: the ratchet advances it in place. Callers work on a `clone` and keep it
    only when the whole operation succeeded, so a failure never changes the stored session.

    Attributes:
        session_version: 4 (PQXDH).
        local_identity: our identity key.
        remote_identity: the peer's identity key.
        root_key: the current 32-byte root key.
        previous_counter: length of our previous sending chain, sent in each header.
        sender_chain: our sending chain.
        receiver_chains: up to `MAX_RECEIVER_CHAINS` receiving chains, oldest first.
        pending_pre_key: set until the peer's first answer arrives (initiator only).
        remote_registration_id: the peer's registration id.
        local_registration_id: ours.
        alice_base_key: the initiator's base key (33 bytes); names the session.
        pq_ratchet_state: SPQR state; always empty in kurir (SPQR negotiated down).
    """

    session_version: int
    local_identity: PublicKey
    remote_identity: PublicKey
    root_key: bytes = field(repr=False)
    previous_counter: int
    sender_chain: SenderChain
    receiver_chains: list[ReceiverChain] = field(default_factory=list)
    pending_pre_key: PendingPreKey | None = None
    remote_registration_id: int = 0
    local_registration_id: int = 0
    alice_base_key: bytes = b""
    pq_ratchet_state: bytes = field(default=b"", repr=False)

    def clone(self) -> SessionState:
        """A copy that shares no mutable part with this state."""
        return SessionState(
            self.session_version,
            self.local_identity,
            self.remote_identity,
            self.root_key,
            self.previous_counter,
            SenderChain(
                self.sender_chain.ratchet_key,
                ChainKey(self.sender_chain.chain_key.key, self.sender_chain.chain_key.index),
            ),
            [
                ReceiverChain(
                    chain.ratchet_key,
                    ChainKey(chain.chain_key.key, chain.chain_key.index),
                    list(chain.message_keys),
                )
                for chain in self.receiver_chains
            ],
            self.pending_pre_key,
            self.remote_registration_id,
            self.local_registration_id,
            self.alice_base_key,
            self.pq_ratchet_state,
        )

    @property
    def session_with_self(self) -> bool:
        """True for a session between two devices of the same identity (no jump limit)."""
        return self.local_identity == self.remote_identity

    def receiver_chain(self, ratchet_key: PublicKey) -> ReceiverChain | None:
        """The receiving chain for a peer ratchet key, if we still have it."""
        for chain in self.receiver_chains:
            if chain.ratchet_key == ratchet_key:
                return chain
        return None

    def add_receiver_chain(self, ratchet_key: PublicKey, chain_key: ChainKey) -> ReceiverChain:
        """Appends a receiving chain, dropping the oldest beyond `MAX_RECEIVER_CHAINS`."""
        chain = ReceiverChain(ratchet_key, chain_key)
        self.receiver_chains.append(chain)
        if len(self.receiver_chains) > MAX_RECEIVER_CHAINS:
            del self.receiver_chains[0]
        return chain

    def is_stale(self, now: datetime) -> bool:
        """True when our unanswered PreKeySignalMessage is older than 30 days."""
        pending = self.pending_pre_key
        if pending is None:
            return False
        return pending.timestamp_s + MAX_UNACKNOWLEDGED_SESSION_AGE.total_seconds() < (
            now.timestamp()
        )

    # --- serialization ------------------------------------------------------------------------

    def _write(self, proto: Any) -> None:
        # Fills an empty ``SessionStructure`` in place (the record's own field, no copy). proto3:
        # zero values are left out, as prost leaves them out.
        sender = self.sender_chain
        proto.session_version = self.session_version
        proto.local_identity_public = self.local_identity.serialize()
        proto.remote_identity_public = self.remote_identity.serialize()
        proto.root_key = self.root_key
        proto.previous_counter = self.previous_counter
        proto.remote_registration_id = self.remote_registration_id
        proto.local_registration_id = self.local_registration_id
        proto.alice_base_key = self.alice_base_key
        proto.pq_ratchet_state = self.pq_ratchet_state
        chain = proto.sender_chain
        chain.sender_ratchet_key = sender.ratchet_key.public_key.serialize()
        chain.sender_ratchet_key_private = sender.ratchet_key.private_key.serialize()
        chain.chain_key.index = sender.chain_key.index
        chain.chain_key.key = sender.chain_key.key
        receivers = proto.receiver_chains
        message_key = protos.MessageKey
        for receiver in self.receiver_chains:
            chain = receivers.add()
            chain.sender_ratchet_key = receiver.ratchet_key.serialize()
            chain.chain_key.index = receiver.chain_key.index
            chain.chain_key.key = receiver.chain_key.key
            if receiver.message_keys:
                chain.message_keys.extend(
                    [message_key(index=i, seed=seed) for i, seed in receiver.message_keys]
                )
        pending = self.pending_pre_key
        if pending is not None:
            pre_key = proto.pending_pre_key
            if pending.pre_key_id is not None:
                pre_key.pre_key_id = pending.pre_key_id
            pre_key.base_key = pending.base_key.serialize()
            # int32 on the wire, as libsignal writes the u32 id
            pre_key.signed_pre_key_id = (
                pending.signed_pre_key_id - (1 << 32)
                if pending.signed_pre_key_id >= 1 << 31
                else pending.signed_pre_key_id
            )
            pre_key.timestamp = pending.timestamp_s
            kyber = proto.pending_kyber_pre_key
            kyber.pre_key_id = pending.kyber_pre_key_id
            kyber.ciphertext = pending.kyber_ciphertext

    @classmethod
    def _from_proto(cls, proto: Any) -> Self:
        if proto.session_version != 4:
            raise InvalidStateError(f"session version {proto.session_version} is not supported")
        if not proto.HasField("sender_chain") or not proto.sender_chain.HasField("chain_key"):
            raise InvalidStateError("stored session has no sending chain")
        sender = proto.sender_chain
        receivers = []
        for chain in proto.receiver_chains:
            if not chain.HasField("chain_key"):
                raise InvalidStateError("stored receiving chain has no chain key")
            keys = [(key.index, key.seed) for key in chain.message_keys]
            for _, seed in keys:
                if len(seed) != 32:
                    # libsignal's pre-2023 expanded keys: never written for a v4 session
                    raise InvalidStateError("stored message key has no seed")
            receivers.append(
                ReceiverChain(
                    PublicKey.deserialize(chain.sender_ratchet_key),
                    _chain_key(chain.chain_key),
                    keys,
                )
            )
        pending = None
        if proto.HasField("pending_pre_key"):
            if not proto.HasField("pending_kyber_pre_key"):
                raise InvalidStateError("stored pending prekey has no KEM part")
            pre_key = proto.pending_pre_key
            kyber = proto.pending_kyber_pre_key
            pending = PendingPreKey(
                pre_key.pre_key_id if pre_key.HasField("pre_key_id") else None,
                pre_key.signed_pre_key_id & 0xFFFF_FFFF,
                PublicKey.deserialize(pre_key.base_key),
                pre_key.timestamp,
                kyber.pre_key_id,
                kyber.ciphertext,
            )
        root_key = proto.root_key
        if len(root_key) != 32:
            raise InvalidStateError("stored root key must be 32 bytes")
        # The stored public half is taken as it is (libsignal does the same): deriving it from
        # the private half would cost a scalar multiplication on every load.
        ratchet_key = KeyPair(
            PrivateKey.deserialize(sender.sender_ratchet_key_private),
            PublicKey.deserialize(sender.sender_ratchet_key),
        )
        return cls(
            4,
            PublicKey.deserialize(proto.local_identity_public),
            PublicKey.deserialize(proto.remote_identity_public),
            root_key,
            proto.previous_counter,
            SenderChain(ratchet_key, _chain_key(sender.chain_key)),
            receivers,
            pending,
            proto.remote_registration_id,
            proto.local_registration_id,
            proto.alice_base_key,
            proto.pq_ratchet_state,
        )

    def serialize(self) -> bytes:
        """Returns libsignal's ``SessionStructure`` for this state."""
        proto = protos.SessionStructure()
        self._write(proto)
        return bytes(proto.SerializeToString())

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a ``SessionStructure``.

        Raises:
            InvalidStateError: the bytes do not parse or describe an unusable state.
        """
        try:
            proto = protos.parse(protos.SessionStructure, data)
        except ValueError as exc:
            raise InvalidStateError("stored session does not parse") from exc
        return cls._from_proto_checked(proto)

    @classmethod
    def _from_proto_checked(cls, proto: Any) -> Self:
        try:
            return cls._from_proto(proto)
        except InvalidStateError:
            raise
        except Exception as exc:
            raise InvalidStateError("stored session is inconsistent") from exc


def _chain_key(proto: Any) -> ChainKey:
    key = proto.key
    if len(key) != 32:
        raise InvalidStateError("stored chain key must be 32 bytes")
    return ChainKey(key, proto.index)


# --- record -----------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionRecord:
    """Everything we keep about one peer device: the current session and previous ones.

    Previous states are kept serialized, as libsignal keeps them: they are parsed only when a
    message needs trial decryption, so loading and storing a record costs one state, not 41.

    Attributes:
        current: the state used to send, or None for a fresh or fully archived record.
        archived: previous states (serialized ``SessionStructure``), most recent first, at most
            `ARCHIVED_STATES_MAX_LENGTH`.
    """

    current: SessionState | None = None
    archived: list[bytes] = field(default_factory=list, repr=False)

    def clone(self) -> SessionRecord:
        """A copy that shares no mutable part with this record."""
        return SessionRecord(
            None if self.current is None else self.current.clone(), list(self.archived)
        )

    def previous_states(self) -> Iterator[SessionState]:
        """Parses the previous states, most recent first.

        Raises:
            InvalidStateError: a stored state does not parse.
        """
        for data in self.archived:
            yield SessionState.deserialize(data)

    def has_usable_sender_chain(self, now: datetime) -> bool:
        """True when the current state may be used to send at time `now` (not stale)."""
        return self.current is not None and not self.current.is_stale(now)

    def promote_state(self, state: SessionState) -> None:
        """Makes `state` current, archiving the current one (Sesame: a new session wins)."""
        self.archive_current_state()
        self.current = state

    def archive_current_state(self) -> None:
        """Moves the current state to the front of the previous ones; keeps at most 40.

        The archived state forgets its unacknowledged PQXDH data: it will never again start a
        PreKeySignalMessage.
        """
        if self.current is None:
            return
        state = self.current
        state.pending_pre_key = None
        self.archived.insert(0, state.serialize())
        del self.archived[ARCHIVED_STATES_MAX_LENGTH:]
        self.current = None

    def promote_matching_session(self, version: int, alice_base_key: bytes) -> bool:
        """Makes the state started from `alice_base_key` current, if we have it.

        Returns:
            True when such a state exists (a repeated PreKeySignalMessage needs no new PQXDH).
        """
        current = self.current
        if (
            current is not None
            and current.session_version == version
            and hmac.compare_digest(current.alice_base_key, alice_base_key)
        ):
            return True
        for index, data in enumerate(self.archived):
            # Only the two fields compared are read; the state is built only when it matches.
            try:
                proto = protos.parse(protos.SessionStructure, data)
            except ValueError:
                continue  # a corrupt archived state cannot match (trial decryption skips it too)
            if proto.session_version == version and hmac.compare_digest(
                proto.alice_base_key, alice_base_key
            ):
                state = SessionState._from_proto_checked(proto)
                del self.archived[index]
                self.promote_state(state)
                return True
        return False

    def trial_decrypt(self, decrypt: Callable[[SessionState], _T], *, prekey: bool) -> _T:
        """Decrypts with the first state that can, and makes that state current.

        `decrypt` gets a copy of each state in turn (current first, then previous ones, most
        recent first), advances it and returns the plaintext, or raises. This record changes
        only on success.

        Args:
            decrypt: per-state decryption (the Double Ratchet).
            prekey: True for the message inside a PreKeySignalMessage, which belongs to the
                current state only (the one PQXDH just made or found).

        Raises:
            DuplicateMessageError: a state recognised the message as already decrypted.
            InvalidMessageError: no state could decrypt it.
        """
        if self.current is not None:
            state = self.current.clone()
            try:
                result = decrypt(state)
            except DuplicateMessageError:
                raise
            except SignalProtocolError as exc:
                if prekey:
                    raise InvalidMessageError("decryption failed") from exc
            else:
                self.current = state
                return result
        for index, data in enumerate(self.archived):
            try:
                state = SessionState.deserialize(data)
                result = decrypt(state)
            except DuplicateMessageError:
                raise
            except SignalProtocolError:
                continue
            del self.archived[index]
            self.promote_state(state)
            return result
        raise InvalidMessageError("decryption failed")

    def serialize(self) -> bytes:
        """Returns libsignal's ``RecordStructure``, for the session store."""
        proto = protos.RecordStructure(previous_sessions=self.archived)
        if self.current is not None:
            self.current._write(proto.current_session)
        return bytes(proto.SerializeToString())

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses `serialize`'s output (or a record written by libsignal for a v4 session).

        Previous states are checked only when used (trial decryption skips a corrupt one).

        Raises:
            InvalidStateError: the bytes do not parse or the current state is unusable.
        """
        try:
            proto = protos.parse(protos.RecordStructure, data)
        except ValueError as exc:
            raise InvalidStateError("stored session record does not parse") from exc
        current = (
            SessionState._from_proto_checked(proto.current_session)
            if proto.HasField("current_session")
            else None
        )
        return cls(current, list(proto.previous_sessions[:ARCHIVED_STATES_MAX_LENGTH]))
