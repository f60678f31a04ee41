"""Envelopes that expire unread on the server are reported to the application, never silently
lost (an in-process server on a real socket, with a fake server clock)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from e2e.harness import BUDI, RINA, app_key, collect
from kurir.client.client import Client
from kurir.client.content import Text
from kurir.client.events import ExpiredEvent
from kurir.server.config import ServerConfig, load_apps
from kurir.server.context import Services
from kurir.server.testing import FakeClock, start_server

TTL_MS = 60_000


async def _client(tmp_path: Path, url: str, address: str) -> Client:
    client = await Client.open(tmp_path / address, url, app_key=app_key(address))
    await client.register(address)
    await client.connect()
    await client.wait_drained()
    return client


async def test_expired_envelopes_become_an_expired_event(tmp_path: Path) -> None:
    clock = FakeClock()
    config = replace(ServerConfig(apps=load_apps()), envelope_ttl_ms=TTL_MS, sweep_interval_s=3600)
    async with start_server(tmp_path / "server", config=config, clock=clock) as server:
        budi = await _client(tmp_path, server.base_url, BUDI)
        rina = await _client(tmp_path, server.base_url, RINA)
        await rina.disconnect()
        for i in range(3):
            await budi.send_text(RINA, f"kedaluwarsa {i}")
        clock.advance(TTL_MS + 1)
        services: Services = server.app.state.services
        assert await services.messages.expire() == 3

        await rina.connect()
        await rina.wait_drained()
        events = rina.pending_events()
        assert [(type(e), getattr(e, "count", None)) for e in events] == [(ExpiredEvent, 3)]
        await budi.send_text(RINA, "yang ini sampai")
        got, _ = await collect(rina, messages=1)
        assert got[0].body == Text("yang ini sampai")
        await budi.close()
        await rina.close()
