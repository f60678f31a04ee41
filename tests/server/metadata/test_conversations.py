"""Counts, archive (synced), mute and sound, and content-free push, across apps."""

from __future__ import annotations

from typing import cast

import httpx

from kurir.server.metadata_app import MetadataServices
from kurir.server.services.push import LogPushProvider
from kurir.server.testing import FakeClock, RunningServer
from kurir.wire.frames import Result

from ..helpers import drain, link, message, recv_frame, send, send_frame
from .peers import BUDI, MEGA, RINA, bodies, online, people, send_text


def _pushes(server: RunningServer) -> LogPushProvider:
    metadata = cast(MetadataServices, server.app.state.metadata)
    provider = metadata.push.provider
    assert isinstance(provider, LogPushProvider)
    return provider


async def test_counts_created_and_last_activity(
    mhttp: httpx.AsyncClient, mserver: RunningServer, clock: FakeClock
) -> None:
    budi, rina = await people(mhttp, mserver, BUDI, RINA)
    await mhttp.post("/v1/contacts", json={"entries": [RINA]}, headers=budi.auth)
    await send_text(mserver, rina, budi, b"one")
    clock.advance(5_000)
    await send_text(mserver, rina, budi, b"two")
    clock.advance(5_000)
    await send_text(mserver, budi, rina, b"three")
    assert await bodies(mserver, budi) == [b"one", b"two"]
    r = await mhttp.get("/v1/conversations", headers=budi.auth)
    (c,) = r.json()["conversations"]
    assert (c["address"], c["sent"], c["received"], c["state"]) == (RINA, 1, 2, "accepted")
    assert (c["created"], c["last_activity"]) == (1_700_000_000_000, 1_700_000_010_000)
    r = await mhttp.get("/v1/conversations", headers=rina.auth)
    (c,) = r.json()["conversations"]
    assert (c["address"], c["sent"], c["received"]) == (BUDI, 2, 1)


async def test_archive_is_synced_and_a_new_message_does_not_unarchive(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina = await people(mhttp, mserver, BUDI, RINA)
    phone2 = await link(mhttp, budi, registration_id=202)
    await mhttp.post("/v1/contacts", json={"entries": [RINA]}, headers=budi.auth)
    rina_ws_body = b"hello"
    # rina must address both of budi's devices now
    async with online(mserver, rina) as ws:
        await drain(ws)
        frame = send(1, budi, b"\x01" * 16, message(1, 101, rina_ws_body), message(2, 202, b"h2"))
        await send_frame(ws, frame)
        assert await recv_frame(ws) == Result(1, True)
    before = len(_pushes(mserver).sent)
    r = await mhttp.put(
        f"/v1/conversations/{rina.account_id}", json={"archived": True}, headers=budi.auth
    )
    assert r.status_code == 200, r.text
    assert r.json()["archived"] is True
    # the other device is told (a silent content-free sync push) and sees the same flag
    sync = _pushes(mserver).sent[before:]
    assert [(d.device_id, p.kind, p.silent) for d, p in sync] == [(2, "sync", True)]
    r = await mhttp.get("/v1/conversations", headers=phone2.auth)
    assert r.json()["conversations"][0]["archived"] is True
    async with online(mserver, rina) as ws:
        await drain(ws)
        frame = send(2, budi, b"\x02" * 16, message(1, 101, b"again"), message(2, 202, b"a2"))
        await send_frame(ws, frame)
        assert await recv_frame(ws) == Result(2, True)
    r = await mhttp.get("/v1/conversations", headers=phone2.auth)
    assert r.json()["conversations"][0]["archived"] is True
    # unless the user chose that
    r = await mhttp.put("/v1/settings", json={"unarchive_on_message": True}, headers=phone2.auth)
    assert r.status_code == 200
    async with online(mserver, rina) as ws:
        await drain(ws)
        frame = send(3, budi, b"\x03" * 16, message(1, 101, b"more"), message(2, 202, b"m2"))
        await send_frame(ws, frame)
        assert await recv_frame(ws) == Result(3, True)
    r = await mhttp.get("/v1/conversations", headers=budi.auth)
    assert r.json()["conversations"][0]["archived"] is False


async def test_flags_bad_values_change_nothing(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina = await people(mhttp, mserver, BUDI, RINA)
    await mhttp.post("/v1/contacts", json={"entries": [RINA]}, headers=budi.auth)
    await send_text(mserver, rina, budi, b"x")
    url = f"/v1/conversations/{rina.account_id}"
    for body in ({"sound": "airhorn"}, {"muted": "maybe"}, {"archived": "yes"}):
        r = await mhttp.put(url, json={"archived": True, **body}, headers=budi.auth)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request"), body
    r = await mhttp.put(f"/v1/conversations/{budi.account_id}", json={}, headers=rina.auth)
    assert r.status_code == 200  # rina has a conversation with budi (she wrote)
    r = await mhttp.put("/v1/conversations/not-a-uuid", json={}, headers=budi.auth)
    assert r.status_code == 400
    (mega,) = await people(mhttp, mserver, MEGA)
    r = await mhttp.put(f"/v1/conversations/{mega.account_id}", json={}, headers=budi.auth)
    assert r.status_code == 404
    r = await mhttp.get("/v1/conversations", headers=budi.auth)
    (c,) = r.json()["conversations"]
    assert (c["archived"], c["muted"], c["sound"]) == (False, None, None)


async def test_push_when_offline_has_no_content_uses_sound_silent_when_muted_and_coalesces(
    mhttp: httpx.AsyncClient, mserver: RunningServer, clock: FakeClock
) -> None:
    budi, rina, mega = await people(mhttp, mserver, BUDI, RINA, MEGA)
    await mhttp.post("/v1/contacts", json={"entries": [RINA, MEGA]}, headers=budi.auth)
    await send_text(mserver, rina, budi, b"first")  # creates the conversation
    r = await mhttp.put(
        f"/v1/conversations/{rina.account_id}", json={"sound": "kentongan"}, headers=budi.auth
    )
    assert r.json()["sound"] == "kentongan"
    pushes = _pushes(mserver)
    pushes.sent.clear()
    clock.advance(60_000)
    for text in (b"secret one", b"secret two", b"secret three"):  # a burst: one push
        await send_text(mserver, rina, budi, text)
    assert [(d.account_id, p.kind, p.sound, p.silent) for d, p in pushes.sent] == [
        (budi.account_id, "wake", "kentongan", False)
    ]
    assert pushes.sent[0][1].conversation == str(rina.account_id)
    assert b"secret" not in pushes.sent[0][1].to_json()
    assert RINA.encode() not in pushes.sent[0][1].to_json()
    # a muted conversation gives a silent push
    await send_text(mserver, mega, budi, b"first from mega")
    r = await mhttp.put(
        f"/v1/conversations/{mega.account_id}", json={"muted": "on"}, headers=budi.auth
    )
    assert r.json()["muted"] is True
    pushes.sent.clear()
    clock.advance(60_000)
    await send_text(mserver, mega, budi, b"secret four")
    assert [(p.sound, p.silent) for _, p in pushes.sent] == [("none", True)]
    # an online device gets no push
    pushes.sent.clear()
    clock.advance(60_000)
    async with online(mserver, budi):
        await send_text(mserver, rina, budi, b"while online")
    assert pushes.sent == []


async def test_push_subscription_validation(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    (budi,) = await people(mhttp, mserver, BUDI)
    good = {"endpoint": "https://push.example/abc", "p256dh": "BPk", "auth": "x"}
    r = await mhttp.put("/v1/push", json={**good, "endpoint": "http://x"}, headers=budi.auth)
    assert r.status_code == 400
    r = await mhttp.put("/v1/push", json=good, headers=budi.auth)
    assert r.status_code == 204
    r = await mhttp.get("/v1/report", headers=budi.auth)
    (sub,) = r.json()["tables"]["push_subscriptions"]
    assert sub["endpoint"] == good["endpoint"]
    r = await mhttp.delete("/v1/push", headers=budi.auth)
    assert r.status_code == 204
    r = await mhttp.get("/v1/report", headers=budi.auth)
    assert r.json()["tables"]["push_subscriptions"] == []
