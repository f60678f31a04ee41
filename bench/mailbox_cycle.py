"""The SQLite mailbox store alone: what one message's three write operations cost.

What it measures (docs/performance.md, "Round 2 of the hot path"): the storage side of one
delivered message, as the server runs it, without sockets: ``MailboxStore.enqueue`` of one
envelope with its conversation counts (``SendCount``), the recipient's ``acknowledge`` (which
enqueues the delivery receipt) and the sender's ``acknowledge`` of that receipt. ``--senders``
coroutines (100, like ``kurir bench --devices 100``) each run ``--messages`` such cycles to
random other accounts, one at a time, so the writer group-commits about as many operations per
batch as under the closed-loop bench. It prints cycles per second and the CPU per cycle of this
process (the event loop, pickling the calls and their outcomes) and of the SQLite writer
process (from ``/proc``, Linux only; on a tree whose writer is still a thread of this process,
that thread's CPU, then included in the first figure too).

Message ids are made as kurir's client makes them (``--ids time``: the sending time first,
:mod:`kurir.wire.message_id`) or as 16 random bytes (``--ids random``); the writer's I/O per
cycle (bytes written and read, write calls: the WAL and its checkpoints) shows what that does
to the delivery records' table as it grows (docs/performance.md, "Session 5").

    .venv/bin/python bench/mailbox_cycle.py
    .venv/bin/python bench/mailbox_cycle.py --senders 100 --messages 200
    .venv/bin/python bench/mailbox_cycle.py --messages 3000 --ids random
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kurir.server.storage.metadata_records import ConversationState
from kurir.server.storage.protocols import Storage
from kurir.server.storage.records import NewDevice, OutgoingEnvelope, SendCount
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address
from kurir.wire.message_id import new_message_id

_FAR = 10**15
_D1 = DeviceId(1)


def _cpu_s(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _writer_io(engine: SqliteEngine) -> tuple[int, int, int]:
    """Bytes written, write calls and bytes read by the writer process so far (``/proc``)."""
    pid = getattr(engine._db, "writer_pid", None)
    if pid is None:
        return 0, 0, 0
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(io["wchar"]), int(io["syscw"]), int(io["rchar"])


def _writer_cpu_s(engine: SqliteEngine) -> float:
    """CPU seconds (user + system) of the engine's writer so far: its process, or (an older
    tree) its thread."""
    pid = getattr(engine._db, "writer_pid", None)
    if pid is not None:
        return _cpu_s(f"/proc/{pid}/stat")
    for thread in threading.enumerate():
        if thread.name == "kurir-sqlite-writer" and thread.native_id is not None:
            return _cpu_s(f"/proc/self/task/{thread.native_id}/stat")
    return 0.0


async def _sender(
    storage: Storage,
    me: AccountId,
    peers: list[AccountId],
    rng: random.Random,
    messages: int,
    time_ids: bool,
) -> None:
    mailboxes = storage.mailboxes
    for _ in range(messages):
        peer = rng.choice(peers)
        while peer == me:
            peer = rng.choice(peers)
        if time_ids:
            message_id = new_message_id(time.time_ns() // 1_000_000, rng.randbytes)
        else:
            message_id = rng.randbytes(16)
        envelope = OutgoingEnvelope(
            peer, _D1, message_id, 1, me, _D1, None, message_id, 1, rng.randbytes(200)
        )
        queued = await mailboxes.enqueue(
            [envelope],
            now=2,
            expires_at=_FAR,
            cap=10_000,
            count=SendCount(me, peer, ConversationState.ACCEPTED),
        )
        (stored,) = queued.envelopes[queued[0]]
        receipts = await mailboxes.acknowledge(
            peer, _D1, [stored.seq], now=3, expires_at=_FAR, receipt_source_address=None
        )
        for ref, sent_back in receipts.envelopes.items():
            await mailboxes.acknowledge(
                ref.account_id,
                ref.device_id,
                [e.seq for e in sent_back],
                now=4,
                expires_at=_FAR,
                receipt_source_address=None,
            )


async def _run(senders: int, messages: int, time_ids: bool) -> None:
    engine = SqliteEngine.open(Path(tempfile.mkdtemp(prefix="kurir-cycle-")) / "k.db")
    storage = engine.storage
    rng = random.Random(1)
    ids: list[AccountId] = []
    for index in range(senders):
        ids.append(
            await storage.accounts.register(
                Address("messenger", str(1000 + index)),
                new_account_id=AccountId(uuid.UUID(int=rng.getrandbits(128))),
                device=NewDevice(None, 1, b"s" * 16, b"h" * 32),
                now=1,
            )
        )
    io_0 = _writer_io(engine)
    writer_0, cpu_0, wall_0 = _writer_cpu_s(engine), time.process_time(), time.perf_counter()
    await asyncio.gather(
        *(
            _sender(storage, me, ids, random.Random(i), messages, time_ids)
            for i, me in enumerate(ids)
        )
    )
    wall = time.perf_counter() - wall_0
    written, writes, read = (b - a for a, b in zip(io_0, _writer_io(engine), strict=True))
    cpu, writer = time.process_time() - cpu_0, _writer_cpu_s(engine) - writer_0
    separate = getattr(engine._db, "writer_pid", None) is not None
    total = cpu + writer if separate else cpu
    await engine.close()
    cycles = senders * messages
    print(
        f"{cycles} cycles in {wall:.2f} s: {cycles / wall:,.0f} cycles/s;"
        f" CPU per cycle: all {total / cycles * 1e6:.0f} us,"
        f" writer {writer / cycles * 1e6:.0f} us,"
        f" the rest {(total - writer) / cycles * 1e6:.0f} us;"
        f" the writer wrote {written / cycles / 1024:.1f} KiB per cycle"
        f" ({writes / cycles:.1f} calls) and read {read / cycles / 1024:.1f} KiB"
    )


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--senders", type=int, default=100, help="concurrent senders (100)")
    parser.add_argument("--messages", type=int, default=200, help="cycles per sender (200)")
    parser.add_argument(
        "--ids",
        choices=("time", "random"),
        default="time",
        help="message ids: sending time first, as kurir's client makes them, or random (time)",
    )
    args = parser.parse_args()
    asyncio.run(_run(args.senders, args.messages, args.ids == "time"))


if __name__ == "__main__":
    main()
