"""A raw device for multi-node tests: registration over HTTP and a bare WebSocket.

Used where the SDK hides what a test must see (close codes of a replaced connection).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from typing import Final

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from e2e.harness import app_key
from kurir.wire.auth import encode_basic_auth, encode_password
from kurir.wire.frames import (
    Ack,
    DeviceMessage,
    Drained,
    Envelope,
    GroupSend,
    Result,
    Send,
    ServerFrame,
    decode_server_frame,
    encode_frame,
)

GUARD: Final = 60.0
DEV_CODE: Final = "123456"


@dataclass(frozen=True)
class RawDevice:
    """Device 1 of a freshly registered account."""

    account_id: uuid.UUID
    password: str
    registration_id: int

    @property
    def authorization(self) -> str:
        return encode_basic_auth(self.account_id, 1, self.password)


async def register(base_url: str, address: str, registration_id: int) -> RawDevice:
    """Register ``address`` through the node at ``base_url`` (verification and registration;
    the codes are shared, so test_shared_state.py splits them across nodes)."""
    password = encode_password(os.urandom(32))
    headers = {"X-Kurir-App-Key": app_key(address)}
    async with httpx.AsyncClient(base_url=base_url) as http:
        answer = await http.post("/v1/verification", json={"address": address}, headers=headers)
        answer.raise_for_status()
        answer = await http.post(
            "/v1/accounts",
            json={
                "address": address,
                "code": DEV_CODE,
                "password": password,
                "registration_id": registration_id,
            },
            headers=headers,
        )
        answer.raise_for_status()
        return RawDevice(uuid.UUID(answer.json()["account_id"]), password, registration_id)


class RawConnection:
    """One WebSocket of a raw device."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = 0

    @classmethod
    async def open(cls, base_url: str, device: RawDevice) -> RawConnection:
        url = base_url.replace("http://", "ws://") + "/v1/ws"
        ws = await connect(url, additional_headers={"Authorization": device.authorization})
        return cls(ws)

    async def frame(self) -> ServerFrame:
        async with asyncio.timeout(GUARD):
            data = await self.ws.recv()
        assert isinstance(data, bytes)
        return decode_server_frame(data)

    async def drained(self) -> None:
        while not isinstance(await self.frame(), Drained):
            pass

    async def envelope(self) -> Envelope:
        while True:
            frame = await self.frame()
            if isinstance(frame, Envelope):
                await self.ws.send(encode_frame(Ack([frame.seq])))
                return frame

    async def send(self, to: RawDevice, body: bytes) -> Result:
        self._ids += 1
        frame = Send(
            id=self._ids,
            to=to.account_id,
            message_id=os.urandom(16),
            timestamp=1,
            messages=[DeviceMessage(1, to.registration_id, 1, body)],
        )
        await self.ws.send(encode_frame(frame))
        while True:
            answer = await self.frame()
            if isinstance(answer, Result) and answer.id == self._ids:
                return answer

    async def group_send(self, group_id: uuid.UUID, body: bytes) -> Result:
        """One ``group_send`` (the server never reads ``body``); waits for its result."""
        self._ids += 1
        frame = GroupSend(
            id=self._ids, group_id=group_id, message_id=os.urandom(16), timestamp=1, body=body
        )
        await self.ws.send(encode_frame(frame))
        while True:
            answer = await self.frame()
            if isinstance(answer, Result) and answer.id == self._ids:
                return answer

    async def close_code(self) -> int | None:
        """Wait until the server closes this connection; its close code."""
        try:
            async with asyncio.timeout(GUARD):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

    async def close(self) -> None:
        await self.ws.close()
