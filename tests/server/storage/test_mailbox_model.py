"""A Hypothesis state machine drives random enqueue / duplicate / ack / reconnect sequences
against each storage engine and checks them against a tiny model of the mailbox contract."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kurir.server.storage.errors import MailboxFull
from kurir.server.storage.memory import MemoryEngine
from kurir.server.storage.protocols import StorageEngine
from kurir.server.storage.records import NewDevice, OutgoingEnvelope
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address

ME = AccountId(UUID(int=1))
D1 = DeviceId(1)
KEYS = st.integers(0, 12).map(lambda i: i.to_bytes(16, "big"))
CAP = 6
FAR = 10**15


class MailboxModel(RuleBasedStateMachine):
    """Subclasses choose the engine."""

    def make_engine(self, directory: Path) -> StorageEngine:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.tmp = tempfile.TemporaryDirectory()
        self.engine = self.runner.run(self._open())
        self.queued: list[tuple[int, bytes]] = []  # (seq, key) in order
        self.delivered: set[bytes] = set()
        self.last_seq = 0

    async def _open(self) -> StorageEngine:
        engine = self.make_engine(Path(self.tmp.name))
        await engine.storage.accounts.register(
            Address("messenger", "1"),
            new_account_id=ME,
            device=NewDevice(None, 1, b"s", b"h"),
            now=0,
        )
        return engine

    def teardown(self) -> None:
        self.runner.run(self.engine.close())
        self.runner.close()
        self.tmp.cleanup()

    @rule(keys=st.lists(KEYS, min_size=1, max_size=4))
    def enqueue(self, keys: list[bytes]) -> None:
        envelopes = [
            OutgoingEnvelope(ME, D1, k, 1, None, None, None, k, 0, b"body" + k) for k in keys
        ]
        fresh = [
            k
            for k in dict.fromkeys(keys)
            if k not in self.delivered and all(k != q for _, q in self.queued)
        ]
        mailboxes = self.engine.storage.mailboxes
        if len(self.queued) + len(fresh) > CAP:
            with pytest.raises(MailboxFull):
                self.runner.run(mailboxes.enqueue(envelopes, now=1, expires_at=FAR, cap=CAP))
            return
        self.runner.run(mailboxes.enqueue(envelopes, now=1, expires_at=FAR, cap=CAP))
        for key in fresh:
            self.last_seq += 1
            self.queued.append((self.last_seq, key))

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        candidates = [s for s, _ in self.queued] + [self.last_seq + 1, 10_000]
        seqs = data.draw(st.lists(st.sampled_from(candidates), max_size=4))
        self.runner.run(
            self.engine.storage.mailboxes.acknowledge(
                ME, D1, seqs, now=2, expires_at=FAR, receipt_source_address=None
            )
        )
        for seq, key in list(self.queued):
            if seq in seqs:
                self.queued.remove((seq, key))
                self.delivered.add(key)

    @rule(after=st.integers(0, 20), limit=st.integers(1, 10))
    def fetch_window(self, after: int, limit: int) -> None:
        got = self.runner.run(
            self.engine.storage.mailboxes.fetch(ME, D1, after_seq=after, limit=limit, now=3)
        )
        expected = [(s, k) for s, k in self.queued if s > after][:limit]
        assert [(e.seq, e.message_id) for e in got] == expected

    @invariant()
    def everything_queued_is_delivered_in_order(self) -> None:
        mailboxes = self.engine.storage.mailboxes
        got = self.runner.run(mailboxes.fetch(ME, D1, after_seq=0, limit=100, now=3))
        assert [(e.seq, e.message_id) for e in got] == self.queued
        assert all(e.body == b"body" + e.message_id for e in got)
        assert self.runner.run(mailboxes.last_seq(ME, D1)) == self.last_seq


class MemoryMailbox(MailboxModel):
    def make_engine(self, directory: Path) -> StorageEngine:
        return MemoryEngine()


class SqliteMailbox(MailboxModel):
    def make_engine(self, directory: Path) -> StorageEngine:
        return SqliteEngine.open(directory / "k.db")


_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryMailbox = MemoryMailbox.TestCase
TestMemoryMailbox.settings = _SETTINGS
TestSqliteMailbox = SqliteMailbox.TestCase
TestSqliteMailbox.settings = _SETTINGS
