"""The Hypothesis state machine over 1:1 Signal sessions and the model it checks against.

Owns: `SessionMachine` (send, deliver, reorder, drop, duplicate, tamper, snapshot and restore,
restart), the kurir test participant (`Participant`, over dumpable `Stores`), the `Peer` Protocol
any participant implements (libsignal's in ``test_interop_state_machine.py``), and the model.
The test modules choose the participants: ``test_session_state_machine.py`` (two kurir
participants; three devices) and ``test_interop_state_machine.py`` (kurir and libsignal). No
sockets: the "network" is a pool of serialized ciphertexts. Each
participant's randomness is ``random.Random(seed).randbytes`` with a seed Hypothesis draws, and
time is a fake clock that the machine advances (never as far as the 30-day staleness limit, which
`tests/crypto` covers). Bundles carry a one-time or the device's last-resort ML-KEM-1024 prekey,
or a Kyber1024 one (libsignal's type), with or without a one-time EC prekey.

The model knows, per receiver and per session (named by the initiator's base key), which
receiving chains (the sender's ratchet keys) the receiver holds, in creation order and at most
five, as libsignal keeps them (``consts.rs`` ``MAX_RECEIVER_CHAINS``), and which counters of each
it has decrypted. From that alone it predicts every delivery. What is checked:

1. **Exactly once, exactly what was sent.** A delivered message decrypts to the plaintext it was
   encrypted from; a receiver never decrypts the same message twice in its own history, nor two
   messages under the same message key (sender ratchet key and counter).
2. **Liveness within libsignal's limits** (sessions not tainted, see below): a message decrypts
   unless its receiving chain was dropped (five newer chains of that session arrived since; then
   `InvalidMessageError`); a message already decrypted raises `DuplicateMessageError`.
   Reordering across ratchet steps, across sessions (Sesame trial decryption and promotion) and
   simultaneous initiation are all covered.
3. **Failures are documented and harmless**: only `DuplicateMessageError`, `InvalidMessageError`
   (with its subclasses) and `NoSessionError` are raised, and a failed operation leaves every
   store of that participant byte-identical.
4. **Sending**: encryption succeeds exactly when the sender has a session record for the peer; it
   yields a PreKeySignalMessage exactly while the sender started the current session and has not
   decrypted anything in it yet.
5. **Restart**: stores rebuilt from their serialized form behave identically (the model does not
   change, and the serialized form round-trips byte for byte).

**Restore from snapshot.** Rolling a participant P back to a snapshot of its stores is what a
device restored from a backup does. Then, precisely:

* messages P sent after the snapshot are orphaned: P has forgotten it sent them and its next
  messages reuse their chain keys and counters. At most one message per reused key decrypts
  (property 1); the other fails. Orphans count as lost (the application resends them);
* P forgets what it decrypted after the snapshot, so a redelivered message may decrypt again
  (exactly once holds per receiver history, and P's history was rewound);
* P's ratchets no longer match its peers' (P draws fresh ratchet keys where it had drawn others),
  so every session P took part in before the restore is **tainted**: for its messages only
  properties 1 and 3 are checked, any of the documented errors may occur;
* sessions started after the restore are clean again: properties 1 to 4 hold for them, whatever
  the tainted sessions do beside them in the same records. The restore rule therefore optionally
  starts a fresh session with every peer, as a client does after restoring (Signal archives all
  sessions after a backup restore).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import PublicKey, Rng
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidPreKeyMessageError,
    NoSessionError,
    SignalProtocolError,
)
from kurir.crypto.kem import KemType
from kurir.crypto.messages import (
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
    generate_signed_pre_key,
)
from kurir.crypto.session import SessionRecord
from kurir.crypto.session_cipher import message_decrypt, message_encrypt, process_prekey_bundle
from kurir.crypto.stores import Direction

MAX_RECEIVER_CHAINS: Final = 5
"""libsignal ``consts.rs``: receiving chains kept per session (stated here, not imported, so the
model does not take the implementation's word for it)."""

START: Final = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CLOCK_BUDGET: Final = timedelta(days=29)
"""The clock never reaches the 30-day limit on unanswered sessions."""

DOCUMENTED: Final = (DuplicateMessageError, InvalidMessageError, NoSessionError)
"""What delivering an untampered message may raise (subclasses included)."""

TAMPERED: Final = (SignalProtocolError,)
"""What a tampered copy may raise: any error of kurir's tree (a flipped identity key gives
`UntrustedIdentityError`, a flipped key type byte an `InvalidKeyError`), nothing else."""

LAST_RESORT_ID: Final = 0xFFFFFF


class Kem(enum.Enum):
    """The KEM prekey a bundle carries."""

    ONE_TIME = "one-time ML-KEM-1024"
    LAST_RESORT = "last-resort ML-KEM-1024 (shared by every bundle of the device)"
    KYBER1024 = "one-time Kyber1024 (libsignal's type 0x08; pure Python, slow)"


def _attempt(
    operation: Callable[[], bytes], allowed: tuple[type[Exception], ...] = DOCUMENTED
) -> bytes | Exception:
    """Runs `operation`, returning an allowed error instead of raising it."""
    try:
        return operation()
    except allowed as error:
        return error


class FakeClock:
    """The time every operation is given; only the machine moves it."""

    def __init__(self) -> None:
        self.now = START

    def advance(self, seconds: int) -> None:
        self.now = min(self.now + timedelta(seconds=seconds), START + CLOCK_BUDGET)


# --- stores that can be dumped and rebuilt ----------------------------------------------------


@dataclass(frozen=True)
class StoreDump:
    """Everything a participant's stores hold, serialized (what a disk would keep)."""

    identity: bytes
    registration_id: int
    known: frozenset[tuple[ProtocolAddress, bytes]]
    sessions: frozenset[tuple[ProtocolAddress, bytes]]
    pre_keys: frozenset[tuple[int, bytes]]
    signed_pre_keys: frozenset[tuple[int, bytes]]
    kyber_pre_keys: frozenset[tuple[int, bytes]]
    kyber_last_resort: frozenset[int]
    kyber_used: frozenset[tuple[int, int, bytes]]


class Stores:
    """All five store Protocols over dicts of serialized records, dumpable and rebuildable.

    A second implementation of `kurir.crypto.stores`' Protocols beside the in-memory reference:
    the session cipher must work with any engine that honours the contract.
    """

    def __init__(self, identity: IdentityKeyPair, registration_id: int) -> None:
        self.identity = identity
        self.registration_id = registration_id
        self.known: dict[ProtocolAddress, bytes] = {}
        self.sessions: dict[ProtocolAddress, bytes] = {}
        self.pre_keys: dict[int, bytes] = {}
        self.signed_pre_keys: dict[int, bytes] = {}
        self.kyber_pre_keys: dict[int, bytes] = {}
        self.kyber_last_resort: set[int] = set()
        self.kyber_used: set[tuple[int, int, bytes]] = set()

    def dump(self) -> StoreDump:
        return StoreDump(
            self.identity.serialize(),
            self.registration_id,
            frozenset(self.known.items()),
            frozenset(self.sessions.items()),
            frozenset(self.pre_keys.items()),
            frozenset(self.signed_pre_keys.items()),
            frozenset(self.kyber_pre_keys.items()),
            frozenset(self.kyber_last_resort),
            frozenset(self.kyber_used),
        )

    @classmethod
    def load(cls, dump: StoreDump) -> Stores:
        stores = cls(IdentityKeyPair.deserialize(dump.identity), dump.registration_id)
        stores.known = dict(dump.known)
        stores.sessions = dict(dump.sessions)
        stores.pre_keys = dict(dump.pre_keys)
        stores.signed_pre_keys = dict(dump.signed_pre_keys)
        stores.kyber_pre_keys = dict(dump.kyber_pre_keys)
        stores.kyber_last_resort = set(dump.kyber_last_resort)
        stores.kyber_used = set(dump.kyber_used)
        return stores

    # IdentityKeyStore
    def get_identity_key_pair(self) -> IdentityKeyPair:
        return self.identity

    def get_local_registration_id(self) -> int:
        return self.registration_id

    def save_identity(self, address: ProtocolAddress, identity_key: PublicKey) -> bool:
        previous = self.known.get(address)
        self.known[address] = identity_key.serialize()
        return previous is not None and previous != identity_key.serialize()

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: PublicKey, direction: Direction
    ) -> bool:
        known = self.known.get(address)
        return known is None or known == identity_key.serialize()

    def get_identity(self, address: ProtocolAddress) -> PublicKey | None:
        known = self.known.get(address)
        return None if known is None else PublicKey.deserialize(known)

    # SessionStore
    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        data = self.sessions.get(address)
        return None if data is None else SessionRecord.deserialize(data)

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        self.sessions[address] = record.serialize()

    # PreKeyStore
    def get_pre_key(self, pre_key_id: PreKeyId) -> PreKeyRecord | None:
        data = self.pre_keys.get(pre_key_id)
        return None if data is None else PreKeyRecord.deserialize(data)

    def save_pre_key(self, pre_key_id: PreKeyId, record: PreKeyRecord) -> None:
        self.pre_keys[pre_key_id] = record.serialize()

    def remove_pre_key(self, pre_key_id: PreKeyId) -> None:
        self.pre_keys.pop(pre_key_id, None)

    # SignedPreKeyStore
    def get_signed_pre_key(self, signed_pre_key_id: SignedPreKeyId) -> SignedPreKeyRecord | None:
        data = self.signed_pre_keys.get(signed_pre_key_id)
        return None if data is None else SignedPreKeyRecord.deserialize(data)

    def save_signed_pre_key(
        self, signed_pre_key_id: SignedPreKeyId, record: SignedPreKeyRecord
    ) -> None:
        self.signed_pre_keys[signed_pre_key_id] = record.serialize()

    # KyberPreKeyStore
    def get_kyber_pre_key(self, kyber_pre_key_id: KyberPreKeyId) -> KyberPreKeyRecord | None:
        data = self.kyber_pre_keys.get(kyber_pre_key_id)
        return None if data is None else KyberPreKeyRecord.deserialize(data)

    def save_kyber_pre_key(
        self, kyber_pre_key_id: KyberPreKeyId, record: KyberPreKeyRecord, *, last_resort: bool
    ) -> None:
        self.kyber_pre_keys[kyber_pre_key_id] = record.serialize()
        if last_resort:
            self.kyber_last_resort.add(kyber_pre_key_id)

    def mark_kyber_pre_key_used(
        self,
        kyber_pre_key_id: KyberPreKeyId,
        signed_pre_key_id: SignedPreKeyId,
        base_key: PublicKey,
    ) -> None:
        if kyber_pre_key_id not in self.kyber_last_resort:
            self.kyber_pre_keys.pop(kyber_pre_key_id, None)
            return
        use = (kyber_pre_key_id, signed_pre_key_id, base_key.serialize())
        if use in self.kyber_used:
            raise InvalidPreKeyMessageError("last-resort KEM prekey reused with the same base key")
        self.kyber_used.add(use)


# --- participants -----------------------------------------------------------------------------


class Peer(Protocol):
    """What the machine needs of a participant, whichever library implements it."""

    address: ProtocolAddress

    def bundle(self, *, one_time: bool, kem: Kem) -> PreKeyBundle:
        """Makes and stores fresh prekeys; returns the bundle (a peer may ignore `kem`)."""
        ...

    def start(self, peer: Peer, *, one_time: bool, kem: Kem) -> bytes:
        """Starts a session from a fresh bundle of `peer`; returns its name (our base key)."""
        ...

    def current_session(self, peer: Peer) -> bytes:
        """The name (initiator's base key) of the current session with `peer`."""
        ...

    def encrypt(self, peer: Peer, plaintext: bytes) -> tuple[int, bytes]:
        """(message type, serialized message); raises `NoSessionError` without a session."""
        ...

    def decrypt(self, peer: Peer, kind: int, body: bytes) -> bytes:
        """The plaintext, or raises one of kurir's errors."""
        ...

    def dump(self) -> object:
        """Everything a failed operation must leave unchanged, comparable with ``==``."""
        ...


class Participant:
    """One device: its address, seeded randomness, stores, and the session cipher calls.

    Prekey ids come from a counter outside the stores, so a restored device never reissues an id
    it already published (the server would hold the old key under it).
    """

    def __init__(
        self,
        address: ProtocolAddress,
        identity: IdentityKeyPair,
        registration_id: int,
        rng: Rng,
        clock: FakeClock,
    ) -> None:
        self.address = address
        self.rng = rng
        self.clock = clock
        self.stores = Stores(identity, registration_id)
        self._next_key_id = 1
        self._last_resort: KyberPreKeyRecord | None = None

    def bundle(self, *, one_time: bool, kem: Kem) -> PreKeyBundle:
        """Makes and stores fresh prekeys; returns the bundle the server would hand out."""
        key_id = self._next_key_id
        self._next_key_id += 1
        identity = self.stores.identity
        now = self.clock.now
        signed = generate_signed_pre_key(identity, SignedPreKeyId(key_id), now=now, rng=self.rng)
        self.stores.save_signed_pre_key(signed.id, signed)
        if kem is Kem.LAST_RESORT:
            if self._last_resort is None:
                self._last_resort = generate_kyber_pre_key(
                    identity, KyberPreKeyId(LAST_RESORT_ID), now=now, rng=self.rng
                )
            kyber = self._last_resort
            if self.stores.get_kyber_pre_key(kyber.id) is None:  # (again) after a restore
                self.stores.save_kyber_pre_key(kyber.id, kyber, last_resort=True)
        else:
            kem_type = KemType.KYBER1024 if kem is Kem.KYBER1024 else KemType.MLKEM1024
            kyber = generate_kyber_pre_key(
                identity, KyberPreKeyId(key_id), now=now, rng=self.rng, kem_type=kem_type
            )
            self.stores.save_kyber_pre_key(kyber.id, kyber, last_resort=False)
        pre_key = None
        if one_time:
            (pre_key,) = generate_pre_keys(PreKeyId(key_id), 1, self.rng)
            self.stores.save_pre_key(pre_key.id, pre_key)
        return PreKeyBundle(
            registration_id=self.stores.registration_id,
            device_id=self.address.device_id,
            pre_key_id=None if pre_key is None else pre_key.id,
            pre_key=None if pre_key is None else pre_key.key_pair.public_key,
            signed_pre_key_id=signed.id,
            signed_pre_key=signed.key_pair.public_key,
            signed_pre_key_signature=signed.signature,
            identity_key=identity.public_key,
            kyber_pre_key_id=kyber.id,
            kyber_pre_key=kyber.key_pair.public_key,
            kyber_pre_key_signature=kyber.signature,
        )

    def dump(self) -> StoreDump:
        return self.stores.dump()

    def start(self, peer: Peer, *, one_time: bool, kem: Kem) -> bytes:
        """Starts a new session with `peer`; returns its name (our base key)."""
        process_prekey_bundle(
            peer.bundle(one_time=one_time, kem=kem),
            peer.address,
            self.stores,
            self.stores,
            now=self.clock.now,
            rng=self.rng,
        )
        return self.current_session(peer)

    def current_session(self, peer: Peer) -> bytes:
        record = self.stores.load_session(peer.address)
        assert record is not None
        assert record.current is not None
        return record.current.alice_base_key

    def encrypt(self, peer: Peer, plaintext: bytes) -> tuple[int, bytes]:
        message = message_encrypt(
            plaintext, peer.address, self.stores, self.stores, now=self.clock.now
        )
        return int(message.message_type), message.serialize()

    def decrypt(self, peer: Peer, kind: int, body: bytes) -> bytes:
        return message_decrypt(
            deserialize_ciphertext(kind, body),
            peer.address,
            self.stores,
            self.stores,
            self.stores,
            self.stores,
            self.stores,
            rng=self.rng,
        )


# --- the model --------------------------------------------------------------------------------


@dataclass
class Sent:
    """One ciphertext on the network, with what the model needs to predict its delivery."""

    id: int
    sender: int
    receiver: int
    plaintext: bytes
    kind: int
    body: bytes
    session: bytes
    ratchet_key: bytes
    counter: int


@dataclass
class SessionView:
    """What a receiver holds of one session: receiving chains (oldest first) and counters used."""

    chains: list[bytes] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    received: dict[bytes, set[int]] = field(default_factory=dict)

    def copy(self) -> SessionView:
        return SessionView(
            list(self.chains), set(self.seen), {k: set(v) for k, v in self.received.items()}
        )


@dataclass
class Knowledge:
    """The model of one participant's stores (snapshotted and restored with them)."""

    records: set[int] = field(default_factory=set)
    decrypted: set[int] = field(default_factory=set)
    keys_used: set[tuple[bytes, int]] = field(default_factory=set)
    views: dict[bytes, SessionView] = field(default_factory=dict)

    def copy(self) -> Knowledge:
        return Knowledge(
            set(self.records),
            set(self.decrypted),
            set(self.keys_used),
            {k: v.copy() for k, v in self.views.items()},
        )


@dataclass(frozen=True)
class Snapshot:
    dump: StoreDump
    knowledge: Knowledge


def _header(kind: int, body: bytes) -> tuple[bytes | None, bytes, int]:
    """(base key if PreKey, sender ratchet key, counter) read from a serialized message."""
    message = deserialize_ciphertext(kind, body)
    match message:
        case PreKeySignalMessage():
            inner = message.message
            return message.base_key.serialize(), inner.sender_ratchet_key.serialize(), inner.counter
        case SignalMessage():
            return None, message.sender_ratchet_key.serialize(), message.counter


class SessionMachine(RuleBasedStateMachine):
    """Participants, a network pool and the model; subclasses choose the participants."""

    DEVICES: tuple[tuple[str, int, str], ...] = ()
    """(address name, device id, identity owner): devices of one owner share an identity."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.peers: list[Peer] = []
        self.knowledge: list[Knowledge] = []
        self.pool: list[Sent] = []
        self.delivered: list[Sent] = []
        self.sessions: dict[bytes, tuple[int, int]] = {}
        self.tainted: set[bytes] = set()
        self.snapshots: list[list[Snapshot]] = []
        self.next_id = 0
        self.content: random.Random = random.Random(0)

    def teardown(self) -> None:
        event(f"messages sent: {min(self.next_id, 20) // 5 * 5}+")

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        starts=st.lists(st.integers(0, 3), min_size=3, max_size=3),
        first_messages=st.lists(st.integers(0, 3), min_size=3, max_size=3),
    )
    def create(self, seed: int, starts: list[int], first_messages: list[int]) -> None:
        """Makes the devices, then for each pair: the first starts a session, the second does,
        both do (simultaneous initiation), or neither yet; each initiator sends a few messages
        into the network."""
        identities: dict[str, IdentityKeyPair] = {}
        for index, (name, device, owner) in enumerate(self.DEVICES):
            rng = random.Random(seed * 16 + index).randbytes
            identity = identities.setdefault(owner, IdentityKeyPair.generate(rng))
            address = ProtocolAddress(name, DeviceId(device))
            self.peers.append(self.make_peer(index, address, identity, rng))
            self.knowledge.append(Knowledge())
            self.snapshots.append([])
        self.content = random.Random(seed)
        count = len(self.peers)
        pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
        for (i, j), start, messages in zip(pairs, starts, first_messages, strict=False):
            if start in (0, 2):
                self._start(i, j, one_time=True, kem=Kem.ONE_TIME)
            if start in (1, 2):
                self._start(j, i, one_time=False, kem=Kem.LAST_RESORT)
            for _ in range(messages):
                if start in (0, 2):
                    self._send(i, j, 16)
                if start in (1, 2):
                    self._send(j, i, 16)

    def make_peer(
        self, index: int, address: ProtocolAddress, identity: IdentityKeyPair, rng: Rng
    ) -> Peer:
        """Makes the participant `index` of `DEVICES` (a kurir one unless overridden)."""
        return Participant(address, identity, 1000 + index, rng, self.clock)

    # --- helpers ----------------------------------------------------------------------------

    def _kurir(self, who: int) -> tuple[int, Participant] | None:
        """The `who`-th kurir participant (round robin), whose stores can be snapshotted."""
        kurir = [(i, p) for i, p in enumerate(self.peers) if isinstance(p, Participant)]
        return kurir[who % len(kurir)] if kurir else None

    def _pair(self, index: int) -> tuple[int, int]:
        count = len(self.peers)
        pairs = [(i, j) for i in range(count) for j in range(count) if i != j]
        return pairs[index % len(pairs)]

    def _start(self, i: int, j: int, *, one_time: bool, kem: Kem) -> None:
        session = self.peers[i].start(self.peers[j], one_time=one_time, kem=kem)
        assert session not in self.sessions
        self.sessions[session] = (i, j)
        self.knowledge[i].records.add(j)
        self.knowledge[i].views[session] = SessionView()

    def _expect(self, m: Sent) -> type[Exception] | None:
        """The model's prediction for delivering `m` on a clean session: None means success."""
        known = self.knowledge[m.receiver]
        view = known.views.get(m.session)
        if view is None:
            if m.kind == CiphertextMessageType.PREKEY:
                return None
            return InvalidMessageError if m.sender in known.records else NoSessionError
        if m.ratchet_key in view.chains:
            received = view.received.get(m.ratchet_key, set())
            return DuplicateMessageError if m.counter in received else None
        if m.ratchet_key in view.seen:
            return InvalidMessageError  # its chain was dropped for newer ones
        return None

    def _deliver(self, m: Sent, tampered: bytes | None = None) -> None:
        """Delivers `m` (or a tampered copy of it) and checks the outcome against the model."""
        receiver = self.peers[m.receiver]
        known = self.knowledge[m.receiver]
        clean = m.session not in self.tainted
        expected = self._expect(m) if clean else None
        before = receiver.dump()
        body = m.body if tampered is None else tampered
        outcome = _attempt(
            lambda: receiver.decrypt(self.peers[m.sender], m.kind, body),
            DOCUMENTED if tampered is None else TAMPERED,
        )
        kind = f"tampered {m.kind}" if tampered is not None else "clean" if clean else "tainted"
        if isinstance(outcome, Exception):
            event(f"delivery ({kind}): {type(outcome).__name__}")
            assert receiver.dump() == before, f"failed delivery changed state: {outcome!r}"
            if clean and tampered is None:
                assert expected is not None, f"message {m.id} should decrypt: {outcome!r}"
                assert isinstance(outcome, expected), f"expected {expected.__name__}: {outcome!r}"
            return
        plaintext = outcome
        event(f"delivery ({kind}): decrypted")
        assert plaintext == m.plaintext, f"message {m.id} decrypted to something else"
        assert m.id not in known.decrypted, f"message {m.id} decrypted twice"
        message_key = (m.ratchet_key, m.counter)
        assert message_key not in known.keys_used, f"message {m.id}: a message key used twice"
        known.keys_used.add(message_key)
        assert not clean or expected is None, f"message {m.id} decrypted: expected {expected}"
        known.decrypted.add(m.id)
        known.records.add(m.sender)
        view = known.views.setdefault(m.session, SessionView())
        if m.ratchet_key not in view.chains and m.ratchet_key not in view.seen:
            view.chains.append(m.ratchet_key)
            view.seen.add(m.ratchet_key)
            del view.chains[:-MAX_RECEIVER_CHAINS]
        view.received.setdefault(m.ratchet_key, set()).add(m.counter)

    # --- rules ------------------------------------------------------------------------------

    @rule(pair=st.integers(0, 5), one_time=st.booleans(), kem=st.sampled_from(Kem))
    def start_session(self, pair: int, one_time: bool, kem: Kem) -> None:
        """The first of the pair fetches a bundle of the second and starts a session (PQXDH);
        when both do so before hearing from each other, that is simultaneous initiation."""
        i, j = self._pair(pair)
        self._start(i, j, one_time=one_time, kem=kem)

    @rule(
        pair=st.integers(0, 5),
        sizes=st.lists(st.integers(0, 80), min_size=1, max_size=4),
        elapsed=st.integers(0, 12 * 3600),
    )
    def send(self, pair: int, sizes: list[int], elapsed: int) -> None:
        """After `elapsed` seconds, the first of the pair sends one message per size."""
        self.clock.advance(elapsed)
        i, j = self._pair(pair)
        for size in sizes:
            self._send(i, j, size)

    @rule(pair=st.integers(0, 5), turns=st.integers(1, 8))
    def converse(self, pair: int, turns: int) -> None:
        """The pair take turns sending one message each, delivered at once: every turn is a DH
        ratchet step, which pushes older receiving chains out (at most five are kept)."""
        i, j = self._pair(pair)
        for _ in range(turns):
            m = self._send(i, j, 8)
            if m is not None:
                self.pool.remove(m)
                self._deliver(m)
                self.delivered.append(m)
            i, j = j, i

    def _send(self, i: int, j: int, size: int) -> Sent | None:
        sender = self.peers[i]
        self.next_id += 1
        plaintext = self.next_id.to_bytes(4, "big") + self.content.randbytes(size)
        before = sender.dump()
        if j not in self.knowledge[i].records:
            try:
                sender.encrypt(self.peers[j], plaintext)
            except NoSessionError:
                assert sender.dump() == before
                return None
            raise AssertionError("encrypted without a session")
        kind, body = sender.encrypt(self.peers[j], plaintext)
        base_key, ratchet_key, counter = _header(kind, body)
        session = sender.current_session(self.peers[j])
        assert base_key is None or base_key == session
        assert self.sessions.get(session) in ((i, j), (j, i)), "sent on a foreign session"
        if session not in self.tainted:
            initiator, _ = self.sessions[session]
            unanswered = initiator == i and not self.knowledge[i].views[session].chains
            assert (kind == CiphertextMessageType.PREKEY) == unanswered
        sent = Sent(self.next_id, i, j, plaintext, kind, body, session, ratchet_key, counter)
        self.pool.append(sent)
        return sent

    @precondition(lambda self: self.pool)
    @rule(index=st.integers(0, 1000))
    def deliver(self, index: int) -> None:
        """Delivers any pending message: the network reorders freely."""
        m = self.pool.pop(index % len(self.pool))
        self._deliver(m)
        self.delivered.append(m)

    @precondition(lambda self: self.pool)
    @rule(index=st.integers(0, 1000), position=st.integers(0, 10_000), bit=st.integers(0, 7))
    def tamper(self, index: int, position: int, bit: int) -> None:
        """Delivers a copy of a pending message with one bit flipped (the original stays in the
        network). Whatever the bit, the copy either fails with a documented error and changes
        nothing, or (an unauthenticated field, such as a PreKey message's registration id)
        decrypts to exactly the original plaintext and counts as the original's delivery."""
        m = self.pool[index % len(self.pool)]
        body = bytearray(m.body)
        body[position % len(body)] ^= 1 << bit
        self._deliver(m, bytes(body))

    @precondition(lambda self: self.pool)
    @rule(index=st.integers(0, 1000))
    def drop(self, index: int) -> None:
        """Loses a pending message for good."""
        self.pool.pop(index % len(self.pool))

    @precondition(lambda self: self.delivered)
    @rule(index=st.integers(0, 1000))
    def duplicate(self, index: int) -> None:
        """Delivers an already delivered message again (a replay or a redelivery)."""
        self._deliver(self.delivered[index % len(self.delivered)])

    @precondition(lambda self: self.pool)
    @rule(order=st.randoms(use_true_random=False))
    def deliver_everything(self, order: random.Random) -> None:
        """Delivers every pending message in a random order."""
        pending, self.pool = self.pool, []
        order.shuffle(pending)
        for m in pending:
            self._deliver(m)
            self.delivered.append(m)

    @rule(who=st.integers(0, 2))
    def snapshot(self, who: int) -> None:
        chosen = self._kurir(who)
        if chosen is not None:
            i, participant = chosen
            self.snapshots[i].append(Snapshot(participant.dump(), self.knowledge[i].copy()))

    @precondition(lambda self: any(self.snapshots))
    @rule(who=st.integers(0, 2), index=st.integers(0, 100), reset=st.booleans())
    def restore(self, who: int, index: int, reset: bool) -> None:
        """Rolls a participant back to one of its snapshots (see the module docstring)."""
        candidates = [i for i, taken in enumerate(self.snapshots) if taken]
        i = candidates[who % len(candidates)]
        snapshot = self.snapshots[i][index % len(self.snapshots[i])]
        participant = self.peers[i]
        assert isinstance(participant, Participant)
        participant.stores = Stores.load(snapshot.dump)
        self.knowledge[i] = snapshot.knowledge.copy()
        self.tainted.update(s for s, pair in self.sessions.items() if i in pair)
        if reset:
            for j in range(len(self.peers)):
                if j != i:
                    self._start(i, j, one_time=True, kem=Kem.ONE_TIME)

    @rule(who=st.integers(0, 2))
    def restart(self, who: int) -> None:
        """Rebuilds a participant's stores from their serialized form: nothing may change."""
        chosen = self._kurir(who)
        if chosen is None:
            return
        _, participant = chosen
        dump = participant.stores.dump()
        participant.stores = Stores.load(dump)
        assert participant.stores.dump() == dump
        for data in dump.sessions:
            assert SessionRecord.deserialize(data[1]).serialize() == data[1]
