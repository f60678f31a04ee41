"""A Hypothesis state machine over two clients' receive paths (real crypto, real SQLite).

Alice and Bob send to each other; the "network" may deliver any pending envelope (reordering),
deliver an already delivered one again (a redelivery after a lost ack), or lose an ack (the
envelope stays pending and comes again). Whatever happens, each side's application sees every
message the other sent and delivered, exactly once, with the right text.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from client.peers import Peer, send
from kurir.client.content import Text
from kurir.client.events import MessageEvent, event_from_inbox
from kurir.wire.frames import Envelope


class TwoClients(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.peers: dict[str, Peer] = {}
        self.pending: dict[str, list[Envelope]] = {"alice": [], "bob": []}
        self.delivered: dict[str, list[Envelope]] = {"alice": [], "bob": []}
        self.sent_texts: dict[str, set[str]] = {"alice": set(), "bob": set()}
        self.seq = 0

    @initialize(seed=st.integers(0, 2**16))
    def setup(self, seed: int) -> None:
        self.peers = {"alice": Peer(seed, "x:1"), "bob": Peer(seed + 1, "x:2")}

    def teardown(self) -> None:
        self.loop.close()

    def _other(self, name: str) -> str:
        return "bob" if name == "alice" else "alice"

    @rule(sender=st.sampled_from(["alice", "bob"]), n=st.integers(0, 10**6))
    def send(self, sender: str, n: int) -> None:
        recipient = self._other(sender)
        self.seq += 1
        text = f"{sender} #{self.seq} {n}"
        envelope = send(self.peers[sender], self.peers[recipient], text, self.seq)
        self.pending[recipient].append(envelope)
        self.sent_texts[sender].add(text)

    @precondition(lambda self: any(self.pending.values()))
    @rule(data=st.data(), lose_ack=st.booleans())
    def deliver(self, data: st.DataObject, lose_ack: bool) -> None:
        name = data.draw(st.sampled_from([n for n, p in self.pending.items() if p]))
        index = data.draw(st.integers(0, len(self.pending[name]) - 1))
        envelope = self.pending[name][index]
        peer = self.peers[name]
        peer.acked.clear()
        self.loop.run_until_complete(peer.incoming.handle(envelope))
        assert peer.acked == [envelope.seq]
        if not lose_ack:  # an acknowledged envelope leaves the server's mailbox
            self.pending[name].pop(index)
        self.delivered[name].append(envelope)

    @precondition(lambda self: any(self.delivered.values()))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from([n for n, d in self.delivered.items() if d]))
        envelope = data.draw(st.sampled_from(self.delivered[name]))
        self.loop.run_until_complete(self.peers[name].incoming.handle(envelope))

    @invariant()
    def each_message_reaches_the_application_once(self) -> None:
        for name, peer in self.peers.items():
            texts = []
            for item in peer.store.inbox(limit=10_000):
                event = event_from_inbox(item)
                assert isinstance(event, MessageEvent), event
                assert isinstance(event.body, Text)
                texts.append(event.body.text)
            assert len(texts) == len(set(texts))  # never twice
            assert set(texts) <= self.sent_texts[self._other(name)]  # only what was sent
            delivered = {e.message_id for e in self.delivered[name]}
            assert len(texts) == len(delivered)  # everything delivered once is there


TwoClients.TestCase.settings = settings(max_examples=15, stateful_step_count=25, deadline=None)
test_two_clients = TwoClients.TestCase
