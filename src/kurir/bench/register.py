"""Registering the simulated devices of a run over the server's HTTP API.

This module owns :class:`DeviceCredentials` (what a simulated device needs to open its
WebSocket) and :func:`register_devices`: ``POST /v1/verification`` then ``POST /v1/accounts``
per device with the development verifier's code (docs/protocol.md §5), as a real client does.

The server limits verification requests per client host (30, then one per 2 s). A real
deployment's devices come from many hosts; here they all come from this machine, so each group
of :data:`DEVICES_PER_SOURCE` devices connects from its own loopback source address
(127.1.x.y: the whole 127.0.0.0/8 is loopback on Linux). The server runs unchanged, with its
limits on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import httpx
import msgspec

from kurir.server.config import load_apps
from kurir.wire import api
from kurir.wire.auth import encode_basic_auth, encode_password

__all__ = [
    "APP_ID",
    "DEVICES_PER_SOURCE",
    "DeviceCredentials",
    "RegistrationFailed",
    "address_of",
    "register_devices",
    "source_address",
]

APP_ID: Final = "messenger"
"""The app of every simulated device (identifier kind ``account``: plain digits)."""
DEVICES_PER_SOURCE: Final = 20
_FIRST_NUMBER: Final = 1_000_000
_CONCURRENCY: Final = 32
_DEV_CODE: Final = "123456"


class RegistrationFailed(Exception):
    """The server refused a registration (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """One registered simulated device (device 1 of its own account)."""

    index: int
    account_id: UUID
    registration_id: int
    password: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value of its WebSocket upgrade."""
        return encode_basic_auth(self.account_id, 1, self.password)


def address_of(index: int) -> str:
    """The address of simulated device ``index``."""
    return f"{APP_ID}:{_FIRST_NUMBER + index}"


def source_address(index: int) -> str:
    """The loopback source address device ``index`` registers from."""
    group = index // DEVICES_PER_SOURCE
    return f"127.1.{group // 250}.{group % 250 + 1}"


def client_key() -> str:
    """The development client key of :data:`APP_ID` from the default app catalogue."""
    app = load_apps(None).get(APP_ID)
    if app is None:
        raise RegistrationFailed(f"no app {APP_ID!r} in the default catalogue")
    return app.client_key


async def _register_one(
    http: httpx.AsyncClient, index: int, key: str, limit: asyncio.Semaphore
) -> DeviceCredentials:
    address = address_of(index)
    password = encode_password(os.urandom(32))
    registration_id = 1 + index % 16380
    headers = {"X-Kurir-App-Key": key}
    async with limit:
        answer = await http.post(
            "/v1/verification",
            content=msgspec.json.encode(api.VerificationRequest(address=address)),
            headers=headers,
        )
        if answer.status_code != 202:
            raise RegistrationFailed(f"verification of {address}: {answer.text}")
        request = api.RegistrationRequest(
            address=address, code=_DEV_CODE, password=password, registration_id=registration_id
        )
        answer = await http.post(
            "/v1/accounts", content=msgspec.json.encode(request), headers=headers
        )
        if answer.status_code != 200:
            raise RegistrationFailed(f"registration of {address}: {answer.text}")
    body = msgspec.json.decode(answer.content, type=api.RegistrationResponse)
    return DeviceCredentials(index, body.account_id, registration_id, password)


async def register_devices(
    base_url: str, count: int, *, progress: Callable[[int], None] | None = None
) -> list[DeviceCredentials]:
    """Register ``count`` devices (indices 0..count-1); return them in index order.

    Args:
        base_url: The server, ``http://127.0.0.1:PORT``.
        count: How many.
        progress: Called with 1 after each registration.

    Raises:
        RegistrationFailed: The server refused one.
    """
    key = client_key()
    limit = asyncio.Semaphore(_CONCURRENCY)
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        for index in range(0, count, DEVICES_PER_SOURCE):
            source = source_address(index)
            clients[source] = httpx.AsyncClient(
                base_url=base_url,
                transport=httpx.AsyncHTTPTransport(local_address=source),
                timeout=60.0,
            )

        async def one(index: int) -> DeviceCredentials:
            device = await _register_one(clients[source_address(index)], index, key, limit)
            if progress is not None:
                progress(1)
            return device

        return list(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients.values()))
