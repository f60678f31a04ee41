"""Helpers of the metadata tests: send one message and read a mailbox over real sockets."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
from websockets.asyncio.client import ClientConnection, connect

from kurir.server.testing import RunningServer
from kurir.wire.frames import Ack, Envelope, Result, Send

from ..helpers import Device, drain, message, recv_frame, register, send, send_frame

RINA = "instagram:@rina"
MEGA = "messenger:1000423"
BUDI = "whatsapp:+6281234567890"
SARI = "whatsapp:+6281311112222"


@contextlib.asynccontextmanager
async def online(server: RunningServer, device: Device) -> AsyncIterator[ClientConnection]:
    """The device's WebSocket."""
    async with connect(server.ws_url, additional_headers=device.auth, max_size=None) as ws:
        yield ws


async def people(http: httpx.AsyncClient, server: RunningServer, *addresses: str) -> list[Device]:
    """Register each address (registration ids 101, 102, ...)."""
    return [
        await register(http, server, a, registration_id=101 + i) for i, a in enumerate(addresses)
    ]


async def send_text(server: RunningServer, sender: Device, to: Device, body: bytes) -> bytes:
    """Send one message (to ``to``'s device 1); assert the server answered ``ok``; return its
    message id."""
    mid = secrets.token_bytes(16)
    async with online(server, sender) as ws:
        await drain(ws)
        await send_frame(ws, send(1, to, mid, message(1, to.registration_id, body)))
        assert await recv_frame(ws) == Result(1, True)
    return mid


async def inbox(server: RunningServer, device: Device, *, ack: bool = True) -> list[Envelope]:
    """Everything in the device's mailbox (acknowledged afterwards unless ``ack`` is False)."""
    async with online(server, device) as ws:
        envelopes, _ = await drain(ws)
        if ack and envelopes:
            await send_frame(ws, Ack([e.seq for e in envelopes]))
            await barrier(ws)
    return envelopes


async def barrier(ws: ClientConnection) -> None:
    """Wait until the server applied every earlier frame: a ``send`` to no account gets a
    ``result`` (frames are handled in order), whatever the device's own device list is."""
    nobody = Send(id=424242, to=uuid.uuid4(), message_id=b"\x00" * 16, timestamp=1, messages=[])
    await send_frame(ws, nobody)
    frame = await recv_frame(ws)
    assert isinstance(frame, Result)
    assert (frame.id, frame.ok) == (424242, False)


async def bodies(server: RunningServer, device: Device) -> list[bytes]:
    """The bodies of the non-receipt envelopes in the device's mailbox (acknowledged)."""
    return [e.body for e in await inbox(server, device) if e.type != 5]
