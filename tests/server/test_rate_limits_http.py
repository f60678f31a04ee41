"""Rate limits over real sockets, driven by a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kurir.server.config import RateLimit, RateLimits, ServerConfig, load_apps
from kurir.server.testing import FakeClock, RunningServer, start_server

from .helpers import app_key, key_upload, register

LIMITS = RateLimits(
    registration_per_address=RateLimit(2, 60_000),
    bundle_fetch_per_account=RateLimit(2, 1_000),
    failed_auth_per_host=RateLimit(3, 10_000),
    directory_per_account=RateLimit(2, 1_000),
)


@dataclass
class Env:
    server: RunningServer
    http: httpx.AsyncClient
    clock: FakeClock


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = FakeClock()
    config = ServerConfig(apps=load_apps(), limits=LIMITS)
    async with (
        start_server(tmp_path, config=config, clock=clock) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        yield Env(server, http, clock)


async def test_failed_auth_locks_out_the_host(env: Env) -> None:
    device = await register(env.http, env.server, "instagram:@rina")
    wrong = {"Authorization": device.auth["Authorization"][:-4] + "AAAA"}
    statuses = [(await env.http.get("/v1/devices", headers=wrong)).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    locked = await env.http.get("/v1/devices", headers=device.auth)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "rate_limited"
    env.clock.advance(10_000)
    assert (await env.http.get("/v1/devices", headers=device.auth)).status_code == 200


async def test_bundle_fetches_are_limited_per_caller(env: Env) -> None:
    alice = await register(env.http, env.server, "messenger:1")
    bob = await register(env.http, env.server, "messenger:2")
    await env.http.put("/v1/keys", json=key_upload(1), headers=bob.auth)
    url = f"/v1/keys/{bob.account_id}/*"
    statuses = [(await env.http.get(url, headers=alice.auth)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await env.http.get(url, headers=bob.auth)).status_code == 200  # another caller
    env.clock.advance(1_000)
    assert (await env.http.get(url, headers=alice.auth)).status_code == 200


async def test_registration_attempts_are_limited_per_address(env: Env) -> None:
    address = "whatsapp:+6281234567890"
    key = app_key(env.server, address)
    await env.http.post("/v1/verification", json={"address": address}, headers=key)
    body = {"address": address, "code": "999999", "password": "A" * 32, "registration_id": 1}
    statuses = [
        (await env.http.post("/v1/accounts", json=body, headers=key)).status_code for _ in range(3)
    ]
    assert statuses == [403, 403, 429]
    # even the right code is refused while limited
    right = {**body, "code": "123456"}
    assert (await env.http.post("/v1/accounts", json=right, headers=key)).status_code == 429
    env.clock.advance(60_000)
    assert (await env.http.post("/v1/accounts", json=right, headers=key)).status_code == 200


async def test_directory_lookups_are_limited_per_caller(env: Env) -> None:
    alice = await register(env.http, env.server, "messenger:1")
    body = {"addresses": ["messenger:1"]}
    statuses = [
        (await env.http.post("/v1/directory", json=body, headers=alice.auth)).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    env.clock.advance(1_000)
    assert (await env.http.post("/v1/directory", json=body, headers=alice.auth)).status_code == 200
