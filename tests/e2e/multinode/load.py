"""Steady two-way chat load between SDK clients, and the exactly-once, in-order check.

Each :class:`Talker` sends numbered texts to a peer until told to stop, one after another,
each retried with its message id until the server acknowledges it (``send_text`` returned),
then a final marker; it receives everything its peer sends until the peer's marker. The
check: every acknowledged text reached the peer's application exactly once, in the order it
was sent, and nothing else arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import Final

from kurir.client.client import Client
from kurir.client.content import Text
from kurir.client.errors import ClientError
from kurir.client.events import MessageEvent, MessageId

END: Final = "selesai"
RETRY_PAUSE_S: Final = 0.05
GUARD_SECONDS: Final = 120.0
"""Only a guard against a hung test; no assertion depends on time."""


@dataclass
class Talker:
    """One client of the load, talking to ``peer_address``."""

    name: str
    client: Client
    peer_address: str
    acknowledged: list[str] = field(default_factory=list)
    retries: int = 0
    received: list[str] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def send_until_stopped(self) -> None:
        """Send ``"<name> <i>"`` one after another until `stop`, then the end marker.

        A send that fails is retried with the same message id (as applications must: the
        server queues it at most once) until the server acknowledges it.
        """
        i = 0
        while not self.stop.is_set():
            text = f"{self.name} {i}"
            i += 1
            await self._send_until_acknowledged(text)
            self.acknowledged.append(text)
            self.progress.set()
        await self._send_until_acknowledged(END)

    async def _send_until_acknowledged(self, text: str) -> None:
        message_id = MessageId(os.urandom(16))
        while True:
            try:
                await self.client.send_text(self.peer_address, text, message_id=message_id)
                return
            except ClientError:
                self.retries += 1
                # a refused connection can fail without ever yielding to the event loop:
                # back off, as a real application would, so the node can come back
                await asyncio.sleep(RETRY_PAUSE_S)

    async def receive_until_end(self) -> None:
        """Store every text from the peer (marking it handled) until the peer's marker."""
        while True:
            # waits across reconnections; raises only if the channel stopped for good
            event = await self.client.next_event()
            self.client.handled(event)
            if isinstance(event, MessageEvent) and isinstance(event.body, Text):
                if event.body.text == END:
                    return
                self.received.append(event.body.text)

    async def sent(self, count: int) -> None:
        """Wait until at least ``count`` texts were acknowledged."""
        while len(self.acknowledged) < count:
            self.progress.clear()
            await self.progress.wait()


async def run_load(
    talkers: list[Talker], fault: contextlib.AbstractAsyncContextManager[None]
) -> None:
    """Run the load; enter ``fault`` while it runs; stop the senders when it exits."""
    senders = [asyncio.create_task(t.send_until_stopped()) for t in talkers]
    receivers = [asyncio.create_task(t.receive_until_end()) for t in talkers]
    phase = "fault"
    try:
        async with asyncio.timeout(GUARD_SECONDS):
            async with fault:
                pass
            for talker in talkers:
                talker.stop.set()
            phase = "senders"
            await asyncio.gather(*senders)
            phase = "receivers"
            await asyncio.gather(*receivers)
    except TimeoutError:
        state = [(t.name, len(t.acknowledged), t.retries, len(t.received)) for t in talkers]
        raise AssertionError(f"hung in {phase}: (name, acked, retries, received) {state}") from None
    finally:
        for task in (*senders, *receivers):
            task.cancel()
        await asyncio.gather(*senders, *receivers, return_exceptions=True)


def check_exactly_once_in_order(sender: Talker, recipient: Talker) -> None:
    """Every text ``sender`` got acknowledged reached ``recipient`` once, in sending order."""
    got = recipient.received
    assert len(got) == len(set(got)), "a message reached the application twice"
    assert got == sender.acknowledged  # every one, once, in sending order, nothing else
