"""Helpers for the server's socket tests: register devices and publish keys over real HTTP."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

import httpx
from websockets.asyncio.client import ClientConnection

from kurir.server.testing import DEV_CODE
from kurir.wire.auth import encode_basic_auth, encode_password
from kurir.wire.frames import (
    ClientFrame,
    DeviceMessage,
    Drained,
    Envelope,
    Result,
    Send,
    ServerFrame,
    decode_server_frame,
    encode_frame,
)

EC_KEY_LEN = 33


def ec_key(tag: int) -> bytes:
    """A fake 33-byte serialized EC public key (the server never interprets keys)."""
    return b"\x05" + tag.to_bytes(32, "big")


def kem_key(tag: int) -> bytes:
    """A fake serialized KEM public key."""
    return b"\x08" + tag.to_bytes(4, "big") * 392


@dataclass(frozen=True)
class Device:
    """A registered device and its credentials."""

    address: str
    account_id: UUID
    device_id: int
    registration_id: int
    password: str = field(repr=False)

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": encode_basic_auth(self.account_id, self.device_id, self.password)}


class KeySource(Protocol):
    """Anything that knows the apps' client keys (a RunningServer, for one)."""

    def client_key(self, app_id: str) -> str:
        """The client key of an app."""
        ...


def app_key(server: KeySource, address: str) -> dict[str, str]:
    """The X-Kurir-App-Key header for the address's app."""
    return {"X-Kurir-App-Key": server.client_key(address.partition(":")[0])}


async def register(
    http: httpx.AsyncClient,
    server: KeySource,
    address: str,
    *,
    registration_id: int = 1234,
    device_name: str | None = None,
) -> Device:
    """Request a code and register ``address``; return device 1."""
    headers = app_key(server, address)
    response = await http.post("/v1/verification", json={"address": address}, headers=headers)
    assert response.status_code == 202, response.text
    password = encode_password(secrets.token_bytes(24))
    body: dict[str, object] = {
        "address": address,
        "code": DEV_CODE,
        "password": password,
        "registration_id": registration_id,
    }
    if device_name is not None:
        body["device_name"] = device_name
    response = await http.post("/v1/accounts", json=body, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["device_id"] == 1
    return Device(address, UUID(data["account_id"]), 1, registration_id, password)


def key_upload(
    identity_tag: int, *, ec: range = range(0), pq: range = range(0)
) -> dict[str, object]:
    """A complete first key upload with one-time keys of the given ids."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    sig = b64(b"s" * 64)
    return {
        "identity_key": b64(ec_key(identity_tag)),
        "signed_prekey": {
            "key_id": 1,
            "public_key": b64(ec_key(1000 + identity_tag)),
            "signature": sig,
        },
        "pq_last_resort_prekey": {
            "key_id": 2,
            "public_key": b64(kem_key(identity_tag)),
            "signature": sig,
        },
        "one_time_prekeys": [{"key_id": i, "public_key": b64(ec_key(i))} for i in ec],
        "pq_one_time_prekeys": [
            {"key_id": i, "public_key": b64(kem_key(i)), "signature": sig} for i in pq
        ],
    }


def ws_headers(device: Device) -> dict[str, str]:
    """Headers of a device's WebSocket upgrade."""
    return device.auth


async def recv_frame(ws: ClientConnection) -> ServerFrame:
    """Receive and decode one server frame."""
    data = await ws.recv()
    assert isinstance(data, bytes), "server frames are binary"
    return decode_server_frame(data)


async def send_frame(ws: ClientConnection, frame: ClientFrame) -> None:
    """Encode and send one client frame."""
    await ws.send(encode_frame(frame))


async def drain(ws: ClientConnection) -> tuple[list[Envelope], Drained]:
    """Receive envelopes up to and including ``drained``."""
    envelopes: list[Envelope] = []
    while True:
        frame = await recv_frame(ws)
        match frame:
            case Envelope():
                envelopes.append(frame)
            case Drained():
                return envelopes, frame
            case _:
                raise AssertionError(f"unexpected frame {frame!r}")


def message(device: int, registration_id: int, body: bytes, type_: int = 1) -> DeviceMessage:
    """One device message."""
    return DeviceMessage(device=device, registration_id=registration_id, type=type_, body=body)


def send(request_id: int, to: Device, message_id: bytes, *messages: DeviceMessage) -> Send:
    """A send frame to ``to``'s account."""
    return Send(
        id=request_id,
        to=to.account_id,
        message_id=message_id,
        timestamp=1_700_000_000_123,
        messages=list(messages),
    )


async def sync(ws: ClientConnection, me: Device, request_id: int = 999_999) -> None:
    """Wait until the server handled every frame sent before (frames are handled in order).

    Sends an empty ``send`` to the device's own account (valid while it has one device).
    """
    await send_frame(ws, send(request_id, me, b"\xff" * 16))
    frame = await recv_frame(ws)
    assert frame == Result(request_id, True), frame


async def link(http: httpx.AsyncClient, primary: Device, *, registration_id: int) -> Device:
    """Link a new device to ``primary``'s account; return it."""
    response = await http.post("/v1/devices/link-code", headers=primary.auth)
    assert response.status_code == 200, response.text
    password = encode_password(secrets.token_bytes(24))
    body = {
        "code": response.json()["code"],
        "password": password,
        "registration_id": registration_id,
    }
    response = await http.post("/v1/devices/link", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert UUID(data["account_id"]) == primary.account_id
    return Device(primary.address, primary.account_id, data["device_id"], registration_id, password)
