"""Group fan-out: one message to a 1,000-member group, every member device connected.

What it measures (docs/performance.md, "Group fan-out"):

* **time to the last device**: from writing one ``group_send`` frame on the sender's socket
  until the last of the other 999 member devices has read its envelope off its socket;
* **time to the result**: until the sender has the server's ``result`` (the durable commit of
  all 999 copies);
* **server CPU per delivered copy**: CPU time of the server process (every thread, from
  ``/proc/<pid>/task/*/schedstat``, nanoseconds) over that window, divided by the copies.

Setup (untimed): the server's SQLite database is seeded directly through the storage engine
(1,000 accounts with one device each, and the group), because registering 1,000 accounts over
HTTP measures registration, not fan-out. Then ``kurir serve`` runs as a child process on that
database and 1,000 raw WebSocket connections (``kurir.bench.rawws``, cheaper per message than a
full client library) authenticate and drain. Each round the receivers acknowledge their copy
and the sender reads and acknowledges the 999 delivery receipts before the next round, so
every round starts from empty mailboxes. The ciphertext is random bytes of a Sender Key
message's size: the server never looks inside.

    .venv/bin/python bench/group_fanout.py                      # 1,000 members, 7 rounds
    .venv/bin/python bench/group_fanout.py --members 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from kurir.bench.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameParser,
    check_handshake,
    encode_frame,
    handshake_request,
)
from kurir.server.credentials import hash_password
from kurir.server.storage.groups import GroupId
from kurir.server.storage.records import NewDevice
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.testing import spawn_server
from kurir.server.types import AccountId
from kurir.wire.address import Address
from kurir.wire.auth import encode_basic_auth, encode_password
from kurir.wire.frames import (
    Ack,
    Drained,
    Envelope,
    EnvelopeType,
    GroupSend,
    Result,
    decode_server_frame,
)
from kurir.wire.frames import encode_frame as encode_kurir_frame


@dataclass
class Member:
    account_id: AccountId
    password: str


async def seed(db_path: Path, members: int) -> tuple[list[Member], GroupId]:
    """Create the accounts and the group straight through the SQLite engine."""
    engine = SqliteEngine.open(db_path)
    people: list[Member] = []
    try:
        storage = engine.storage
        assert storage.groups is not None

        async def one(i: int) -> Member:
            password = encode_password(secrets.token_bytes(24))
            salt = secrets.token_bytes(16)
            device = NewDevice(None, 1 + i % 16000, salt, hash_password(salt, password))
            account_id = await storage.accounts.register(
                Address("messenger", str(1_000_000 + i)),
                new_account_id=AccountId(UUID(bytes=secrets.token_bytes(16), version=4)),
                device=device,
                now=1,
            )
            return Member(account_id, password)

        people = list(await asyncio.gather(*(one(i) for i in range(members))))
        group_id = GroupId(UUID(bytes=secrets.token_bytes(16), version=4))
        await storage.groups.create(
            group_id,
            name="bench",
            avatar=None,
            creator=people[0].account_id,
            members=[p.account_id for p in people[1:]],
            now=1,
            cap=members,
        )
    finally:
        await engine.close()
    return people, group_id


@dataclass
class Device(asyncio.Protocol):
    """One raw WebSocket device connection."""

    member: Member
    parser: FrameParser = field(default_factory=FrameParser)
    transport: asyncio.Transport | None = None
    head: bytearray = field(default_factory=bytearray)
    key: bytes = b""
    upgraded: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    seqs: list[int] = field(default_factory=list)
    results: dict[int, Result] = field(default_factory=dict)
    result_event: asyncio.Event = field(default_factory=asyncio.Event)
    receipts: int = 0
    round_id: bytes = b""
    got_at: float = 0.0
    on_got: asyncio.Event | None = None
    counter: list[int] | None = None
    want: int = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.is_set():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            check_handshake(bytes(self.head[:end]), self.key)
            rest = bytes(self.head[end + 4 :])
            self.upgraded.set()
            if not rest:
                return
            data = rest
        for frame in self.parser.feed(data):
            if frame.opcode == OP_PING:
                self.send_raw(encode_frame(OP_PONG, frame.payload))
            elif frame.opcode == OP_BINARY:
                self.on_frame(frame.payload)
            elif frame.opcode == OP_CLOSE:
                raise SystemExit("server closed a device connection")

    def on_frame(self, payload: bytes) -> None:
        message = decode_server_frame(payload)
        match message:
            case Envelope():
                self.seqs.append(message.seq)
                if message.type == EnvelopeType.SERVER_DELIVERY_RECEIPT:
                    self.receipts += 1
                    if self.receipts >= self.want and self.on_got is not None:
                        self.on_got.set()
                elif message.message_id == self.round_id and self.counter is not None:
                    self.got_at = time.perf_counter()
                    self.counter[0] -= 1
                    if self.counter[0] == 0 and self.on_got is not None:
                        self.on_got.set()
            case Drained():
                self.drained.set()
            case Result():
                self.results[message.id] = message
                self.result_event.set()

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send(self, frame: GroupSend | Ack) -> None:
        self.send_raw(encode_frame(OP_BINARY, encode_kurir_frame(frame)))

    def ack(self) -> None:
        if self.seqs:
            self.send(Ack(seqs=self.seqs))
            self.seqs = []


async def connect(port: int, member: Member) -> Device:
    loop = asyncio.get_running_loop()
    device = Device(member)
    await loop.create_connection(lambda: device, "127.0.0.1", port)
    auth = encode_basic_auth(member.account_id, 1, member.password)
    request, device.key = handshake_request(f"127.0.0.1:{port}", "/v1/ws", {"Authorization": auth})
    device.send_raw(request)
    await device.upgraded.wait()
    await device.drained.wait()
    return device


def server_cpu_ns(pid: int) -> int:
    """CPU time of every thread of the process, in nanoseconds (Linux schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total


async def run(members: int, rounds: int, body_size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kurir-fanout-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        people, group_id = await seed(data_dir / "kurir.db", members)
        print(f"seeded {members} accounts and the group in {time.perf_counter() - started:.1f} s")
        async with spawn_server(data_dir) as server:
            port = int(server.base_url.rsplit(":", 1)[1])
            pid = server.process.pid
            started = time.perf_counter()
            devices: list[Device] = []
            for start in range(0, members, 100):  # 100 handshakes at a time
                batch = people[start : start + 100]
                devices += await asyncio.gather(*(connect(port, m) for m in batch))
            print(f"{members} devices connected in {time.perf_counter() - started:.1f} s")
            sender, receivers = devices[0], devices[1:]
            lasts: list[float] = []
            firsts: list[float] = []
            results: list[float] = []
            cpus: list[float] = []
            for n in range(rounds):
                message_id = secrets.token_bytes(16)
                done = asyncio.Event()
                counter = [len(receivers)]
                for device in receivers:
                    device.round_id, device.counter, device.on_got = message_id, counter, done
                sender.result_event.clear()
                frame = GroupSend(
                    id=n,
                    group_id=group_id,
                    message_id=message_id,
                    timestamp=int(time.time() * 1000),
                    body=os.urandom(body_size),
                )
                cpu0 = server_cpu_ns(pid)
                t0 = time.perf_counter()
                sender.send(frame)
                await asyncio.wait_for(done.wait(), 60)
                cpu1 = server_cpu_ns(pid)
                await asyncio.wait_for(sender.result_event.wait(), 60)
                result_at = time.perf_counter()
                result = sender.results[n]
                if not result.ok:
                    raise SystemExit(f"group_send refused: {result.error}")
                lasts.append(max(d.got_at for d in receivers) - t0)
                firsts.append(min(d.got_at for d in receivers) - t0)
                results.append(result_at - t0)
                cpus.append((cpu1 - cpu0) / len(receivers))
                # clean up: acknowledge; the sender reads and acknowledges every receipt
                receipts = asyncio.Event()
                sender.receipts, sender.want, sender.on_got = 0, len(receivers), receipts
                for device in receivers:
                    device.ack()
                await asyncio.wait_for(receipts.wait(), 60)
                sender.ack()
                print(
                    f"round {n + 1}: first device {firsts[-1] * 1000:.1f} ms,"
                    f" last device {lasts[-1] * 1000:.1f} ms, result"
                    f" {results[-1] * 1000:.1f} ms, server CPU {cpus[-1] / 1000:.1f} µs/copy"
                )
            for device in devices:
                assert device.transport is not None
                device.transport.close()
        copies = members - 1
        print(
            f"\n{members} members, {copies} copies of a {body_size}-byte ciphertext, {rounds}"
            f" rounds (median, min-max):\n"
            f"  time to the last device: {statistics.median(lasts) * 1000:.1f} ms"
            f" ({min(lasts) * 1000:.1f}-{max(lasts) * 1000:.1f})\n"
            f"  time to the sender's result: {statistics.median(results) * 1000:.1f} ms"
            f" ({min(results) * 1000:.1f}-{max(results) * 1000:.1f})\n"
            f"  server CPU per delivered copy: {statistics.median(cpus) / 1000:.1f} µs"
            f" ({min(cpus) / 1000:.1f}-{max(cpus) / 1000:.1f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000, help="group size (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="messages sent (default 7)")
    parser.add_argument(
        "--body", type=int, default=432, help="ciphertext bytes (default 432, one short text)"
    )
    args = parser.parse_args()
    if args.members < 2 or args.rounds < 1:
        parser.error("need at least 2 members and 1 round")
    asyncio.run(run(args.members, args.rounds, args.body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
