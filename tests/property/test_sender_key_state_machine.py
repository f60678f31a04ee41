"""A Hypothesis state machine over Sender Keys: one sender, several receivers, a lossy network.

Owns: the model-based test of `kurir.crypto.sender_keys` with one sender (Alice) and three
receivers (Bob, Carol, Dave) in one group. No sockets: a pool holds each receiver's copy of every
group message and every distribution message (which in kurir travels inside a 1:1 session, and so
can be delayed, reordered or lost like anything else). Randomness is seeded
(``random.Random(seed).randbytes``).

The model keeps, per receiver, the chains it holds (newest first, at most five, as libsignal's
``MAX_SENDER_KEY_STATES``) with, for each, the next iteration expected and the skipped iterations
whose keys are kept. From that it predicts every delivery:

1. a group message decrypts to exactly what was sent, and at most once per receiver history;
2. it decrypts whenever the receiver holds its chain and has not used its iteration, in any order
   (skipped keys), and a distribution message processed late or twice never loses progress;
3. otherwise the error is the documented one: `NoSenderKeyStateError` (chain unknown: never
   distributed, or evicted by five newer chains), `DuplicateMessageError` (iteration used, or
   older than the distribution message the receiver started from); a message with any bit
   flipped never decrypts; no other exception occurs, and a failed decryption leaves the
   receiver's store byte-identical;
4. the sender's iterations count up from 0 in each chain; a rotation (the sender forgets its
   chain, as on a member's removal) starts a new chain with a new id; without a chain, encryption
   fails with `NoSenderKeyStateError` and changes nothing;
5. stores rebuilt from their serialized form, and receivers rolled back to a snapshot, behave
   as the model (rolled back with them) says. A rolled-back receiver may decrypt again what it
   had decrypted after the snapshot: exactly once holds per receiver history.

The limits (2,000 skipped keys, 25,000 iterations ahead) are not reached here; `tests/crypto`
covers them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Final

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import Rng
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    NoSenderKeyStateError,
    SignalProtocolError,
)
from kurir.crypto.sender_key_record import SenderKeyRecord
from kurir.crypto.sender_keys import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

MAX_SENDER_KEY_STATES: Final = 5
"""libsignal ``consts.rs``: chains kept per (sender, distribution id)."""

SENDER = ProtocolAddress("alice", DeviceId(1))
RECEIVERS = (
    ProtocolAddress("bob", DeviceId(1)),
    ProtocolAddress("carol", DeviceId(1)),
    ProtocolAddress("dave", DeviceId(2)),
)
DOCUMENTED: Final = (NoSenderKeyStateError, DuplicateMessageError, InvalidMessageError)


class Store:
    """A `SenderKeyStore` over a dict of serialized records, dumpable and rebuildable."""

    def __init__(self, records: dict[tuple[ProtocolAddress, uuid.UUID], bytes] | None = None):
        self.records = dict(records or {})

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        self.records[(sender, distribution_id)] = record.serialize()

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        data = self.records.get((sender, distribution_id))
        return None if data is None else SenderKeyRecord.deserialize(data)

    def dump(self) -> dict[tuple[ProtocolAddress, uuid.UUID], bytes]:
        return dict(self.records)


@dataclass
class Chain:
    """A receiver's view of one sender chain."""

    next: int
    skipped: set[int] = field(default_factory=set)


@dataclass
class Receiver:
    """The model of one receiver's store (front of `order` = newest chain)."""

    order: list[int] = field(default_factory=list)
    chains: dict[int, Chain] = field(default_factory=dict)
    decrypted: set[int] = field(default_factory=set)

    def copy(self) -> Receiver:
        return Receiver(
            list(self.order),
            {k: Chain(c.next, set(c.skipped)) for k, c in self.chains.items()},
            set(self.decrypted),
        )


@dataclass(frozen=True)
class GroupMessage:
    id: int
    chain_id: int
    iteration: int
    plaintext: bytes
    body: bytes


@dataclass(frozen=True)
class Distribution:
    chain_id: int
    iteration: int
    body: bytes


Delivery = tuple[int, GroupMessage | Distribution]
"""(receiver index, what it receives)."""


class SenderKeyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rng: Rng = random.Random(0).randbytes
        self.group = uuid.UUID(int=0)
        self.sender_store = Store()
        self.stores = [Store() for _ in RECEIVERS]
        self.model = [Receiver() for _ in RECEIVERS]
        self.snapshots: list[list[tuple[dict[tuple[ProtocolAddress, uuid.UUID], bytes], Receiver]]]
        self.snapshots = [[] for _ in RECEIVERS]
        self.chain_id: int | None = None
        self.iteration = 0
        self.chain_ids: set[int] = set()
        self.pool: list[Delivery] = []
        self.delivered: list[Delivery] = []
        self.next_id = 0
        self.content = random.Random(0)

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        chain=st.booleans(),
        receivers=st.sets(st.integers(0, 2)),
        first_messages=st.lists(st.integers(0, 64), max_size=6),
    )
    def create(
        self, seed: int, chain: bool, receivers: set[int], first_messages: list[int]
    ) -> None:
        """The sender makes its chain (or not yet), sends its distribution message to some
        receivers, then a few group messages."""
        self.rng = random.Random(seed).randbytes
        self.group = uuid.UUID(bytes=self.rng(16), version=4)
        self.content = random.Random(seed + 1)
        if chain:
            self._distribute(sorted(receivers))
        self._send(first_messages)

    def teardown(self) -> None:
        event(f"group messages {min(self.next_id, 10)}")

    # --- sender -----------------------------------------------------------------------------

    def _distribute(self, receivers: list[int]) -> None:
        message = create_sender_key_distribution_message(
            SENDER, self.group, self.sender_store, self.rng
        )
        if self.chain_id is None:
            assert message.chain_id not in self.chain_ids, "a rotated chain reused its id"
            self.chain_id = message.chain_id
            self.chain_ids.add(message.chain_id)
            self.iteration = 0
        assert (message.chain_id, message.iteration) == (self.chain_id, self.iteration)
        parsed = SenderKeyDistributionMessage.deserialize(message.serialized)
        assert parsed.distribution_id == self.group
        for r in receivers:
            self.pool.append(
                (r, Distribution(message.chain_id, message.iteration, parsed.serialized))
            )

    @rule(receivers=st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True))
    def distribute(self, receivers: list[int]) -> None:
        """The sender sends (again) its distribution message, with its current iteration."""
        self._distribute(receivers)

    @rule(sizes=st.lists(st.integers(0, 64), min_size=1, max_size=4))
    def send(self, sizes: list[int]) -> None:
        """The sender encrypts messages, one copy each for every receiver."""
        self._send(sizes)

    def _send(self, sizes: list[int]) -> None:
        for size in sizes:
            self.next_id += 1
            plaintext = self.next_id.to_bytes(4, "big") + self.content.randbytes(size)
            before = self.sender_store.dump()
            if self.chain_id is None:
                try:
                    group_encrypt(self.sender_store, SENDER, self.group, plaintext, self.rng)
                except NoSenderKeyStateError:
                    assert self.sender_store.dump() == before
                    return
                raise AssertionError("encrypted without a chain")
            message = group_encrypt(self.sender_store, SENDER, self.group, plaintext, self.rng)
            parsed = SenderKeyMessage.deserialize(message.serialized)
            assert (parsed.chain_id, parsed.iteration) == (self.chain_id, self.iteration)
            sent = GroupMessage(
                self.next_id, parsed.chain_id, parsed.iteration, plaintext, message.serialized
            )
            self.iteration += 1
            self.pool.extend((r, sent) for r in range(len(RECEIVERS)))

    @rule(
        times=st.integers(1, 3),
        receivers=st.lists(st.integers(0, 2), max_size=3, unique=True),
    )
    def rotate(self, times: int, receivers: list[int]) -> None:
        """The sender forgets its chain (as after a member leaves) and distributes a new one,
        `times` over: receivers keep at most five chains, the oldest are evicted."""
        for _ in range(times):
            self.sender_store.records.pop((SENDER, self.group), None)
            self.chain_id = None
            self._distribute(receivers)

    @rule()
    def restart_sender(self) -> None:
        self.sender_store = Store(self.sender_store.dump())

    # --- receivers --------------------------------------------------------------------------

    def _deliver(self, delivery: Delivery) -> None:
        r, item = delivery
        model = self.model[r]
        store = self.stores[r]
        match item:
            case Distribution():
                message = SenderKeyDistributionMessage.deserialize(item.body)
                process_sender_key_distribution_message(SENDER, message, store)
                if item.chain_id not in model.chains:
                    model.chains[item.chain_id] = Chain(item.iteration)
                else:
                    model.order.remove(item.chain_id)
                model.order.insert(0, item.chain_id)
                for evicted in model.order[MAX_SENDER_KEY_STATES:]:
                    del model.chains[evicted]
                del model.order[MAX_SENDER_KEY_STATES:]
            case GroupMessage():
                self._decrypt(r, item)

    def _decrypt(self, r: int, m: GroupMessage) -> None:
        model = self.model[r]
        store = self.stores[r]
        chain = model.chains.get(m.chain_id)
        expected: type[Exception] | None = None
        if chain is None:
            expected = NoSenderKeyStateError
        elif m.iteration < chain.next and m.iteration not in chain.skipped:
            expected = DuplicateMessageError
        before = store.dump()
        try:
            plaintext: bytes | Exception = group_decrypt(m.body, store, SENDER)
        except DOCUMENTED as error:
            plaintext = error
        if isinstance(plaintext, Exception):
            event(f"delivery: {type(plaintext).__name__}")
            assert store.dump() == before, f"failed decryption changed the store: {plaintext!r}"
            assert expected is not None, f"message {m.id} should decrypt: {plaintext!r}"
            assert isinstance(plaintext, expected), f"expected {expected.__name__}: {plaintext!r}"
            return
        event("delivery: decrypted")
        assert plaintext == m.plaintext, f"message {m.id} decrypted to something else"
        assert m.id not in model.decrypted, f"message {m.id} decrypted twice"
        assert expected is None, f"message {m.id} decrypted, expected {expected.__name__}"
        assert chain is not None
        model.decrypted.add(m.id)
        if m.iteration < chain.next:
            chain.skipped.remove(m.iteration)
        else:
            chain.skipped.update(range(chain.next, m.iteration))
            chain.next = m.iteration + 1

    @precondition(lambda self: self.pool)
    @rule(index=st.integers(0, 1000))
    def deliver(self, index: int) -> None:
        """Delivers any pending item: the network reorders freely."""
        delivery = self.pool.pop(index % len(self.pool))
        self._deliver(delivery)
        self.delivered.append(delivery)

    @precondition(lambda self: self.pool)
    @rule(order=st.randoms(use_true_random=False))
    def deliver_everything(self, order: random.Random) -> None:
        pending, self.pool = self.pool, []
        order.shuffle(pending)
        for delivery in pending:
            self._deliver(delivery)
            self.delivered.append(delivery)

    @precondition(lambda self: any(isinstance(item, GroupMessage) for _, item in self.pool))
    @rule(index=st.integers(0, 1000), position=st.integers(0, 10_000), bit=st.integers(0, 7))
    def tamper(self, index: int, position: int, bit: int) -> None:
        """Delivers a pending group message with one bit flipped (the original stays pending):
        everything in it is signed, so it must fail with a documented error, changing nothing."""
        messages = [(r, item) for r, item in self.pool if isinstance(item, GroupMessage)]
        r, m = messages[index % len(messages)]
        body = bytearray(m.body)
        body[position % len(body)] ^= 1 << bit
        before = self.stores[r].dump()
        try:
            group_decrypt(bytes(body), self.stores[r], SENDER)
        except SignalProtocolError as error:
            event(f"tampered: {type(error).__name__}")
        else:
            raise AssertionError(f"a tampered copy of message {m.id} decrypted")
        assert self.stores[r].dump() == before

    @precondition(lambda self: self.pool)
    @rule(index=st.integers(0, 1000))
    def drop(self, index: int) -> None:
        self.pool.pop(index % len(self.pool))

    @precondition(lambda self: any(isinstance(item, GroupMessage) for _, item in self.delivered))
    @rule(index=st.integers(0, 1000))
    def duplicate(self, index: int) -> None:
        """Delivers an already delivered group message again (a replay or a redelivery).

        Distribution messages are not replayed: they travel inside 1:1 sessions, which refuse
        duplicates. (Replaying one would be harmful: a receiver that has evicted the chain would
        install it again from the old iteration and accept its messages a second time, in
        libsignal as in kurir.)
        """
        replays = [(r, item) for r, item in self.delivered if isinstance(item, GroupMessage)]
        self._deliver(replays[index % len(replays)])

    @rule(r=st.integers(0, 2))
    def snapshot(self, r: int) -> None:
        self.snapshots[r].append((self.stores[r].dump(), self.model[r].copy()))

    @precondition(lambda self: any(self.snapshots))
    @rule(r=st.integers(0, 2), index=st.integers(0, 100))
    def restore(self, r: int, index: int) -> None:
        """Rolls a receiver back to one of its snapshots."""
        candidates = [i for i, taken in enumerate(self.snapshots) if taken]
        r = candidates[r % len(candidates)]
        records, model = self.snapshots[r][index % len(self.snapshots[r])]
        self.stores[r] = Store(records)
        self.model[r] = model.copy()

    @rule(r=st.integers(0, 2))
    def restart(self, r: int) -> None:
        """Rebuilds a receiver's store from its serialized records: nothing may change."""
        records = self.stores[r].dump()
        for data in records.values():
            assert SenderKeyRecord.deserialize(data).serialize() == data
        self.stores[r] = Store(records)


TestSenderKeys = SenderKeyMachine.TestCase
TestSenderKeys.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
