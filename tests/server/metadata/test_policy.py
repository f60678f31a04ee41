"""Blocks, cross-app reachability and message requests, across apps, over real sockets."""

from __future__ import annotations

import httpx

from kurir.server.testing import RunningServer

from ..helpers import key_upload
from .peers import BUDI, MEGA, RINA, SARI, bodies, inbox, people, send_text


async def _everyone(http: httpx.AsyncClient, *devices: object) -> None:
    for d in devices:
        r = await http.put(
            "/v1/settings",
            json={"reachability": "everyone"},
            headers=d.auth,  # type: ignore[attr-defined]
        )
        assert r.status_code == 200, r.text


async def test_block_across_apps_never_delivers_and_unblock_restores(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    mega, rina = await people(mhttp, mserver, MEGA, RINA)
    await _everyone(mhttp, mega)
    # the messenger user blocks the instagram user by address
    r = await mhttp.post("/v1/blocks", json={"address": "instagram:@RINA"}, headers=mega.auth)
    assert r.status_code == 204, r.text
    r = await mhttp.get("/v1/blocks", headers=mega.auth)
    assert [(b["account_id"], b["address"]) for b in r.json()["blocks"]] == [
        (str(rina.account_id), RINA)
    ]
    # rina sees "sent" (result ok) ...
    await send_text(mserver, rina, mega, b"blocked-text")
    # ... but nothing reaches mega, so no receipt ever comes back to rina
    assert await inbox(mserver, mega) == []
    assert await inbox(mserver, rina) == []
    # her bundle fetches are refused as if there were no keys
    await mhttp.put("/v1/keys", json=key_upload(7, ec=range(1, 3)), headers=mega.auth)
    r = await mhttp.get(f"/v1/keys/{mega.account_id}/*", headers=rina.auth)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    # the block does not hide mega from rina's directory (she must not learn of it)
    r = await mhttp.post("/v1/directory", json={"addresses": [MEGA]}, headers=rina.auth)
    assert [e["address"] for e in r.json()["results"]] == [MEGA]
    # unblock restores delivery and bundles
    r = await mhttp.post("/v1/blocks/remove", json={"address": RINA}, headers=mega.auth)
    assert r.status_code == 204
    await send_text(mserver, rina, mega, b"after-unblock")
    assert await bodies(mserver, mega) == [b"after-unblock"]
    r = await mhttp.get(f"/v1/keys/{mega.account_id}/*", headers=rina.auth)
    assert r.status_code == 200


async def test_block_applies_whichever_app_and_direction(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina = await people(mhttp, mserver, BUDI, RINA)
    await _everyone(mhttp, budi, rina)
    r = await mhttp.post("/v1/blocks", json={"account_id": str(budi.account_id)}, headers=rina.auth)
    assert r.status_code == 204
    await send_text(mserver, budi, rina, b"x")
    assert await inbox(mserver, rina) == []
    # rina blocking budi does not stop rina from writing to budi
    await send_text(mserver, rina, budi, b"y")
    assert await bodies(mserver, budi) == [b"y"]


async def test_nobody_account_cannot_be_found_or_messaged_from_other_apps(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina, sari = await people(mhttp, mserver, BUDI, RINA, SARI)
    await _everyone(mhttp, budi)
    r = await mhttp.put("/v1/settings", json={"reachability": "nobody"}, headers=budi.auth)
    assert r.json()["reachability"] == "nobody"
    await mhttp.put("/v1/keys", json=key_upload(9), headers=budi.auth)
    r = await mhttp.post("/v1/directory", json={"addresses": [BUDI]}, headers=rina.auth)
    assert r.json()["results"] == []
    r = await mhttp.get(f"/v1/keys/{budi.account_id}/*", headers=rina.auth)
    assert r.status_code == 404
    r = await mhttp.get(f"/v1/profile/{budi.account_id}", headers=rina.auth)
    assert r.status_code == 404
    await send_text(mserver, rina, budi, b"hello?")
    assert await inbox(mserver, budi) == []
    # the setting is about other apps: a whatsapp user still finds budi (as a request)
    r = await mhttp.post("/v1/directory", json={"addresses": [BUDI]}, headers=sari.auth)
    assert [e["address"] for e in r.json()["results"]] == [BUDI]
    await send_text(mserver, sari, budi, b"same app")
    assert await bodies(mserver, budi) == [b"same app"]
    r = await mhttp.get("/v1/requests", headers=budi.auth)
    assert [q["address"] for q in r.json()["requests"]] == [SARI]


async def test_contacts_default_lets_only_contacts_in(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina, mega = await people(mhttp, mserver, BUDI, RINA, MEGA)
    r = await mhttp.get("/v1/settings", headers=budi.auth)
    assert r.json()["reachability"] == "contacts"  # the default for new accounts
    await send_text(mserver, rina, budi, b"stranger")
    assert await inbox(mserver, budi) == []
    r = await mhttp.post("/v1/directory", json={"addresses": [BUDI]}, headers=rina.auth)
    assert r.json()["results"] == []
    # budi's address book names rina (an address) and mega is not in it
    r = await mhttp.post("/v1/contacts", json={"entries": [RINA]}, headers=budi.auth)
    assert r.status_code == 200, r.text
    await send_text(mserver, rina, budi, b"contact")
    await send_text(mserver, mega, budi, b"not a contact")
    assert await bodies(mserver, budi) == [b"contact"]
    r = await mhttp.get("/v1/requests", headers=budi.auth)
    assert r.json()["requests"] == []  # contacts do not land as requests


async def test_message_request_accept_decline_and_declined_stays_declined(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina, mega = await people(mhttp, mserver, BUDI, RINA, MEGA)
    await _everyone(mhttp, budi)
    await send_text(mserver, rina, budi, b"hi from instagram")
    first = await send_text(mserver, mega, budi, b"hi from messenger")
    assert await bodies(mserver, budi) == [b"hi from instagram", b"hi from messenger"]
    r = await mhttp.get("/v1/requests", headers=budi.auth)
    assert sorted(q["address"] for q in r.json()["requests"]) == sorted([RINA, MEGA])
    r = await mhttp.post("/v1/requests/decline", json={"address": MEGA}, headers=budi.auth)
    assert r.status_code == 204
    r = await mhttp.post("/v1/requests/accept", json={"address": RINA}, headers=budi.auth)
    assert r.status_code == 204
    for _ in range(2):
        await send_text(mserver, mega, budi, b"again")
    await send_text(mserver, rina, budi, b"accepted")
    assert await bodies(mserver, budi) == [b"accepted"]
    # mega got the receipt of her first message only: none for what came after the decline
    receipts = await inbox(mserver, mega)
    assert [(e.type, e.message_id) for e in receipts] == [(5, first)]
    r = await mhttp.get("/v1/conversations", headers=budi.auth)
    states = {c["address"]: c["state"] for c in r.json()["conversations"]}
    assert states == {RINA: "accepted", MEGA: "declined"}
    # a declined request is not pending any more; answering it again is fine, a stranger's not
    r = await mhttp.get("/v1/requests", headers=budi.auth)
    assert r.json()["requests"] == []
    r = await mhttp.post("/v1/requests/accept", json={"address": SARI}, headers=budi.auth)
    assert r.status_code == 404
    # replying is accepting
    sari = (await people(mhttp, mserver, SARI))[0]
    await send_text(mserver, sari, budi, b"first")
    await send_text(mserver, budi, sari, b"reply")
    r = await mhttp.get("/v1/requests", headers=budi.auth)
    assert r.json()["requests"] == []


async def test_bad_settings_values_change_nothing(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    (budi,) = await people(mhttp, mserver, BUDI)
    for body, field in (
        ({"reachability": "friends"}, "reachability"),
        ({"default_sound": "airhorn", "reachability": "everyone"}, "default_sound"),
        ({"default_muted": "yes"}, "default_muted"),
    ):
        r = await mhttp.put("/v1/settings", json=body, headers=budi.auth)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request")
        assert field in r.json()["error"]["message"]
    r = await mhttp.get("/v1/settings", headers=budi.auth)
    assert (r.json()["reachability"], r.json()["default_sound"]) == ("contacts", "default")
    r = await mhttp.post("/v1/blocks", json={"address": "nonsense"}, headers=budi.auth)
    assert r.status_code == 400
    r = await mhttp.post("/v1/blocks", json={"account_id": str(budi.account_id)}, headers=budi.auth)
    assert r.status_code == 400
    r = await mhttp.post("/v1/blocks", json={}, headers=budi.auth)
    assert r.status_code == 400
    r = await mhttp.get("/v1/blocks", headers=budi.auth)
    assert r.json()["blocks"] == []
    r = await mhttp.get("/v1/settings")
    assert r.status_code == 401


async def test_group_invitations_follow_blocks_and_reachability(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina, mega = await people(mhttp, mserver, BUDI, RINA, MEGA)
    await _everyone(mhttp, budi)
    await mhttp.post("/v1/blocks", json={"address": RINA}, headers=budi.auth)
    r = await mhttp.post(
        "/v1/groups", json={"name": "g", "members": [str(budi.account_id)]}, headers=rina.auth
    )
    assert r.status_code == 403, r.text
    # mega has the default (contacts): a stranger of another app cannot add her either
    r = await mhttp.post(
        "/v1/groups", json={"name": "g", "members": [str(mega.account_id)]}, headers=budi.auth
    )
    assert r.status_code == 403, r.text
    await mhttp.post("/v1/contacts", json={"entries": [BUDI]}, headers=mega.auth)
    r = await mhttp.post(
        "/v1/groups", json={"name": "g", "members": [str(mega.account_id)]}, headers=budi.auth
    )
    assert r.status_code == 200, r.text
