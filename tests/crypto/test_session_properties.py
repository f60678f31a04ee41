"""A Hypothesis state machine drives two kurir devices through send, drop, reorder, duplicate,
tamper and restart; every delivered message decrypts to what was sent, exactly once.

The one loss the Double Ratchet (as libsignal implements it) allows is modelled explicitly: a
receiver keeps `MAX_RECEIVER_CHAINS` receiving chains, so a message whose chain was trimmed may
no longer decrypt, and must then fail cleanly (InvalidMessageError, session unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

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
from kurir.crypto.session import MAX_RECEIVER_CHAINS, SessionRecord


@dataclass
class InFlight:
    sender: str
    message: CiphertextMessage
    plaintext: bytes


def ratchet_key(message: CiphertextMessage) -> PublicKey:
    inner = message.message if isinstance(message, PreKeySignalMessage) else message
    return inner.sender_ratchet_key


class TwoDevices(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        self.devices = {"alice": Device("alice", 2 * seed), "bob": Device("bob", 2 * seed + 1)}
        self.devices["alice"].start(self.devices["bob"])
        self.in_flight: list[InFlight] = []
        self.delivered: list[InFlight] = []
        # per receiver: the sender ratchet keys it made receiving chains for, in order
        self.chains: dict[str, list[PublicKey]] = {"alice": [], "bob": []}
        self.counter = 0

    def peer(self, name: str) -> str:
        return "bob" if name == "alice" else "alice"

    def has_session(self, name: str) -> bool:
        device = self.devices[name]
        return device.sessions.load_session(self.devices[self.peer(name)].address) is not None

    def record(self, name: str) -> bytes:
        device = self.devices[name]
        record = device.sessions.load_session(self.devices[self.peer(name)].address)
        return b"" if record is None else record.serialize()

    @precondition(lambda self: len(self.in_flight) < 30)
    @rule(sender=st.sampled_from(["alice", "bob"]))
    def send(self, sender: str) -> None:
        if not self.has_session(sender):
            return
        self.counter += 1
        plaintext = f"{sender} {self.counter}".encode()
        device, peer = self.devices[sender], self.devices[self.peer(sender)]
        self.in_flight.append(InFlight(sender, device.encrypt(peer, plaintext), plaintext))

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        item = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        receiver = self.peer(item.sender)
        key = ratchet_key(item.message)
        history = self.chains[receiver]
        trimmed = key in history and history.index(key) < len(history) - MAX_RECEIVER_CHAINS
        device, sender = self.devices[receiver], self.devices[item.sender]
        if trimmed:
            before = self.record(receiver)
            try:
                plaintext = device.decrypt(sender, item.message)
            except InvalidMessageError:
                assert self.record(receiver) == before
                return
        else:
            plaintext = device.decrypt(sender, item.message)
        assert plaintext == item.plaintext
        if key not in history:
            history.append(key)
        self.delivered.append(item)

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        item = self.delivered[data.draw(st.integers(0, len(self.delivered) - 1))]
        receiver = self.peer(item.sender)
        before = self.record(receiver)
        try:
            self.devices[receiver].decrypt(self.devices[item.sender], item.message)
        except (DuplicateMessageError, InvalidMessageError):
            pass
        else:
            raise AssertionError("a message decrypted twice")
        assert self.record(receiver) == before

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), position=st.integers(0, 10_000), bit=st.integers(0, 7))
    def tamper(self, data: st.DataObject, position: int, bit: int) -> None:
        """A flipped bit is refused with nothing changed, or, in the few bits libsignal leaves
        unauthenticated too (the outer PreKeySignalMessage's version low nibble and registration
        id), the content still comes out intact and the genuine copy becomes a duplicate."""
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        item = self.in_flight[index]
        raw = bytearray(item.message.serialize())
        raw[position % len(raw)] ^= 1 << bit
        receiver = self.peer(item.sender)
        key = ratchet_key(item.message)
        history = self.chains[receiver]
        before = self.record(receiver)
        try:
            forged = deserialize_ciphertext(int(item.message.message_type), bytes(raw))
            plaintext = self.devices[receiver].decrypt(self.devices[item.sender], forged)
        except SignalProtocolError:
            assert self.record(receiver) == before
            return
        assert isinstance(item.message, PreKeySignalMessage)
        assert plaintext == item.plaintext
        del self.in_flight[index]
        if key not in history:
            history.append(key)
        self.delivered.append(item)

    @rule(name=st.sampled_from(["alice", "bob"]))
    def restart(self, name: str) -> None:
        """Reloads the device's session from its serialized form into a fresh store."""
        device = self.devices[name]
        peer = self.devices[self.peer(name)].address
        record = device.sessions.load_session(peer)
        device.sessions = type(device.sessions)()
        if record is not None:
            device.sessions.store_session(peer, SessionRecord.deserialize(record.serialize()))

    @invariant()
    def messages_are_typed(self) -> None:
        for item in self.in_flight:
            assert isinstance(item.message, (SignalMessage, PreKeySignalMessage))


TwoDevices.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None, database=None
)
test_two_devices = TwoDevices.TestCase
