"""A Hypothesis state machine drives kurir devices through send, drop, reorder, duplicate,
tamper and restart; every delivered message decrypts to what was sent, exactly once.

Three devices: Alice, and Bob's two devices sharing Bob's identity (so Bob's devices also hold a
session with each other, a session "with oneself"). Every pair has its own session.

The one loss the Double Ratchet (as libsignal implements it) allows is modelled explicitly: a
receiver keeps `MAX_RECEIVER_CHAINS` receiving chains per session, so a message whose chain was
trimmed may no longer decrypt, and must then fail cleanly (InvalidMessageError, nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from signal_device import Device

from kurir.crypto.curve import PublicKey
from kurir.crypto.errors import DuplicateMessageError, InvalidMessageError, SignalProtocolError
from kurir.crypto.messages import (
    CiphertextMessage,
    PreKeySignalMessage,
    SignalMessage,
    deserialize_ciphertext,
)
from kurir.crypto.prekeys import IdentityKeyPair
from kurir.crypto.session import MAX_RECEIVER_CHAINS, SessionRecord
from kurir.crypto.stores import InMemorySessionStore

NAMES = ("alice", "bob.1", "bob.2")
DIRECTIONS = list(permutations(NAMES, 2))


@dataclass
class InFlight:
    sender: str
    receiver: str
    message: CiphertextMessage
    plaintext: bytes


def ratchet_key(message: CiphertextMessage) -> PublicKey:
    inner = message.message if isinstance(message, PreKeySignalMessage) else message
    return inner.sender_ratchet_key


class Devices(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        bob_identity = IdentityKeyPair.generate(Device("seed", seed).rng)
        self.devices = {
            "alice": Device("alice", 3 * seed),
            "bob.1": Device("bob", 3 * seed + 1, identity=bob_identity),
            "bob.2": Device("bob", 3 * seed + 2, device_id=2, identity=bob_identity),
        }
        for first, second in (("alice", "bob.1"), ("alice", "bob.2"), ("bob.1", "bob.2")):
            self.devices[first].start(self.devices[second])
        self.in_flight: list[InFlight] = []
        self.delivered: list[InFlight] = []
        # per (receiver, sender): the sender ratchet keys it made receiving chains for, in order
        self.chains: dict[tuple[str, str], list[PublicKey]] = {d: [] for d in DIRECTIONS}
        self.counter = 0

    def record(self, owner: str, peer: str) -> bytes:
        record = self.devices[owner].sessions.load_session(self.devices[peer].address)
        return b"" if record is None else record.serialize()

    def pick(self, data: st.DataObject, items: list[InFlight]) -> int:
        return data.draw(st.integers(0, len(items) - 1))

    def accept(self, item: InFlight) -> None:
        history = self.chains[(item.receiver, item.sender)]
        key = ratchet_key(item.message)
        if key not in history:
            history.append(key)
        self.delivered.append(item)

    @precondition(lambda self: len(self.in_flight) < 30)
    @rule(direction=st.sampled_from(DIRECTIONS))
    def send(self, direction: tuple[str, str]) -> None:
        sender, receiver = direction
        if not self.record(sender, receiver):
            return  # the responder has no session until the first message arrives
        self.counter += 1
        plaintext = f"{sender}->{receiver} {self.counter}".encode()
        message = self.devices[sender].encrypt(self.devices[receiver], plaintext)
        self.in_flight.append(InFlight(sender, receiver, message, plaintext))

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        item = self.in_flight.pop(self.pick(data, self.in_flight))
        history = self.chains[(item.receiver, item.sender)]
        key = ratchet_key(item.message)
        trimmed = key in history and history.index(key) < len(history) - MAX_RECEIVER_CHAINS
        receiver, sender = self.devices[item.receiver], self.devices[item.sender]
        if trimmed:
            before = self.record(item.receiver, item.sender)
            try:
                plaintext = receiver.decrypt(sender, item.message)
            except InvalidMessageError:
                assert self.record(item.receiver, item.sender) == before
                return
        else:
            plaintext = receiver.decrypt(sender, item.message)
        assert plaintext == item.plaintext
        self.accept(item)

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.in_flight.pop(self.pick(data, self.in_flight))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        item = self.delivered[self.pick(data, self.delivered)]
        before = self.record(item.receiver, item.sender)
        try:
            self.devices[item.receiver].decrypt(self.devices[item.sender], item.message)
        except (DuplicateMessageError, InvalidMessageError):
            pass
        else:
            raise AssertionError("a message decrypted twice")
        assert self.record(item.receiver, item.sender) == before

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), position=st.integers(0, 10_000), bit=st.integers(0, 7))
    def tamper(self, data: st.DataObject, position: int, bit: int) -> None:
        """A flipped bit is refused with nothing changed, or, in the few bits libsignal leaves
        unauthenticated too (the outer PreKeySignalMessage's version low nibble and registration
        id), the content still comes out intact and the genuine copy becomes a duplicate."""
        index = self.pick(data, self.in_flight)
        item = self.in_flight[index]
        raw = bytearray(item.message.serialize())
        raw[position % len(raw)] ^= 1 << bit
        before = self.record(item.receiver, item.sender)
        try:
            forged = deserialize_ciphertext(int(item.message.message_type), bytes(raw))
            plaintext = self.devices[item.receiver].decrypt(self.devices[item.sender], forged)
        except SignalProtocolError:
            assert self.record(item.receiver, item.sender) == before
            return
        assert isinstance(item.message, PreKeySignalMessage)
        assert plaintext == item.plaintext
        del self.in_flight[index]
        self.accept(item)

    @rule(name=st.sampled_from(NAMES))
    def restart(self, name: str) -> None:
        """Reloads the device's sessions from their serialized form into a fresh store."""
        device = self.devices[name]
        fresh = InMemorySessionStore()
        for other in NAMES:
            address = self.devices[other].address
            record = device.sessions.load_session(address)
            if record is not None:
                fresh.store_session(address, SessionRecord.deserialize(record.serialize()))
        device.sessions = fresh

    @invariant()
    def messages_are_typed(self) -> None:
        for item in self.in_flight:
            assert isinstance(item.message, (SignalMessage, PreKeySignalMessage))


Devices.TestCase.settings = settings(
    max_examples=40, stateful_step_count=50, deadline=None, database=None
)
test_devices = Devices.TestCase
