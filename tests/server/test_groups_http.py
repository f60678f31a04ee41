"""Groups over real HTTP and WebSocket sockets: policy, fan-out, and bad input changing nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect

from kurir.server.config import ServerConfig, load_apps
from kurir.server.testing import RunningServer, start_server
from kurir.wire.frames import Drained, Envelope, EnvelopeType, GroupSend, Result

from .helpers import Device, drain, link, recv_frame, register, send_frame

ALICE = "whatsapp:+6281234567890"
BOB = "instagram:@bob"
CARA = "messenger:1000423"
DEAN = "instagram:@dean"


@contextlib.asynccontextmanager
async def online(server: RunningServer, device: Device) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws_url, additional_headers=device.auth, max_size=None) as ws:
        assert await drain(ws) == ([], Drained())
        yield ws


async def _people(http: httpx.AsyncClient, server: RunningServer) -> list[Device]:
    return [
        await register(http, server, a, registration_id=i + 1)
        for i, a in enumerate((ALICE, BOB, CARA, DEAN))
    ]


async def _create(
    http: httpx.AsyncClient, creator: Device, *members: Device, name: str = "bakso"
) -> dict[str, Any]:
    body = {"name": name, "members": [str(m.account_id) for m in members]}
    response = await http.post("/v1/groups", json=body, headers=creator.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def _get(http: httpx.AsyncClient, group_id: str, who: Device) -> httpx.Response:
    return await http.get(f"/v1/groups/{group_id}", headers=who.auth)


def _roles(group: dict[str, Any]) -> dict[str, str]:
    return {m["address"]: m["role"] for m in group["members"]}


async def test_create_get_list_across_apps(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, bob, cara, dean = await _people(http, server)
    avatar = b"\x00\x01encrypted-avatar"
    body = {
        "name": "Makan malam",
        "members": [str(bob.account_id), str(cara.account_id), str(bob.account_id)],
        "avatar": "AAFlbmNyeXB0ZWQtYXZhdGFy",
    }
    response = await http.post("/v1/groups", json=body, headers=alice.auth)
    assert response.status_code == 200, response.text
    group = response.json()
    assert group["name"] == "Makan malam"
    assert group["revision"] == 1
    assert _roles(group) == {ALICE: "admin", BOB: "member", CARA: "member"}
    assert all(m["devices"] == [1] for m in group["members"])
    # each device's registration id, in the order of "devices" (registered as 1, 2, 3)
    assert {m["address"]: m["registration_ids"] for m in group["members"]} == {
        ALICE: [1],
        BOB: [2],
        CARA: [3],
    }
    assert group["settings"] == {"archived": False, "muted_until": 0, "sound": None}
    got = await _get(http, group["group_id"], cara)
    assert got.status_code == 200
    assert got.json()["avatar"] == "AAFlbmNyeXB0ZWQtYXZhdGFy"
    assert avatar == b"\x00\x01encrypted-avatar"
    listed = await http.get("/v1/groups", headers=bob.auth)
    assert [g["group_id"] for g in listed.json()["groups"]] == [group["group_id"]]
    # a non-member learns nothing, not even that the group exists
    hidden = await _get(http, group["group_id"], dean)
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"
    assert (await http.get("/v1/groups", headers=dean.auth)).json() == {"groups": []}


async def test_admin_rules_add_remove_promote_leave(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob, cara, dean = await _people(http, server)
    group = await _create(http, alice, bob)
    gid = group["group_id"]
    # a member who is not an admin can neither add nor remove nor promote
    response = await http.post(
        f"/v1/groups/{gid}/members", json={"members": [str(dean.account_id)]}, headers=bob.auth
    )
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    response = await http.delete(f"/v1/groups/{gid}/members/{alice.account_id}", headers=bob.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    response = await http.post(
        f"/v1/groups/{gid}/admins", json={"account_id": str(bob.account_id)}, headers=bob.auth
    )
    assert response.status_code == 403
    assert (await _get(http, gid, alice)).json() == group  # nothing changed

    response = await http.post(
        f"/v1/groups/{gid}/members",
        json={"members": [str(cara.account_id), str(dean.account_id)]},
        headers=alice.auth,
    )
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2
    assert set(_roles(response.json())) == {ALICE, BOB, CARA, DEAN}
    response = await http.post(
        f"/v1/groups/{gid}/admins", json={"account_id": str(bob.account_id)}, headers=alice.auth
    )
    assert _roles(response.json())[BOB] == "admin"
    response = await http.delete(f"/v1/groups/{gid}/members/{dean.account_id}", headers=bob.auth)
    assert response.status_code == 200
    assert DEAN not in _roles(response.json())
    assert (await _get(http, gid, dean)).status_code == 404
    # leaving: the last admins go, the longest-standing member becomes admin
    for who in (alice, bob):
        assert (await http.post(f"/v1/groups/{gid}/leave", headers=who.auth)).status_code == 204
    assert _roles((await _get(http, gid, cara)).json()) == {CARA: "admin"}
    assert (await http.post(f"/v1/groups/{gid}/leave", headers=cara.auth)).status_code == 204
    assert (await _get(http, gid, cara)).status_code == 404


async def test_bad_input_changes_nothing(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, bob, _, dean = await _people(http, server)
    group = await _create(http, alice, bob)
    gid = group["group_id"]
    unknown = str(UUID(int=7))
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/groups", {"name": "", "members": []}, 400, "invalid_request"),
        ("POST", "/v1/groups", {"name": "  ", "members": []}, 400, "invalid_request"),
        ("POST", "/v1/groups", {"name": "x", "members": ["nope"]}, 400, "invalid_request"),
        ("POST", "/v1/groups", {"name": "x", "members": [unknown]}, 404, "unknown_account"),
        ("POST", "/v1/groups", {"name": "x" * 129, "members": []}, 400, "invalid_request"),
        ("POST", f"/v1/groups/{gid}/members", {"members": [unknown]}, 404, "unknown_account"),
        ("POST", f"/v1/groups/{gid}/members", {"members": []}, 400, "invalid_request"),
        ("POST", f"/v1/groups/{unknown}/members", {"members": [unknown]}, 404, "not_found"),
        ("POST", "/v1/groups/not-a-uuid/leave", None, 400, "invalid_request"),
        ("DELETE", f"/v1/groups/{gid}/members/{dean.account_id}", None, 404, "unknown_account"),
        ("DELETE", f"/v1/groups/{gid}/members/{alice.account_id}", None, 400, "invalid_request"),
        ("PUT", f"/v1/groups/{gid}/settings", {"muted_until": -1}, 400, "invalid_request"),
        ("PUT", f"/v1/groups/{gid}/settings", {"sound": "siren"}, 400, "invalid_request"),
    ]
    for method, path, body, status, code in cases:
        response = await http.request(method, path, json=body, headers=alice.auth)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
    assert (await _get(http, gid, alice)).json() == group
    assert [
        g["group_id"] for g in (await http.get("/v1/groups", headers=alice.auth)).json()["groups"]
    ] == [gid]
    # an outsider cannot leave, change settings, or learn anything
    for method, path in (
        ("POST", f"/v1/groups/{gid}/leave"),
        ("PUT", f"/v1/groups/{gid}/settings"),
    ):
        response = await http.request(method, path, json={}, headers=dean.auth)
        assert response.status_code == 404
    assert (await _get(http, gid, alice)).json() == group


async def test_member_cap_is_configuration(tmp_path: Path) -> None:
    config = ServerConfig(apps=load_apps(), group_member_cap=3)
    async with (
        start_server(tmp_path / "data", config=config) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        alice, bob, cara, dean = await _people(http, server)
        body = {"name": "x", "members": [str(d.account_id) for d in (bob, cara, dean)]}
        response = await http.post("/v1/groups", json=body, headers=alice.auth)
        assert (response.status_code, response.json()["error"]["code"]) == (409, "group_full")
        assert (await http.get("/v1/groups", headers=alice.auth)).json() == {"groups": []}
        group = await _create(http, alice, bob, cara)
        response = await http.post(
            f"/v1/groups/{group['group_id']}/members",
            json={"members": [str(dean.account_id)]},
            headers=alice.auth,
        )
        assert (response.status_code, response.json()["error"]["code"]) == (409, "group_full")
        assert (await _get(http, group["group_id"], alice)).json() == group


async def test_settings_are_per_member(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice, bob, _, _ = await _people(http, server)
    gid = (await _create(http, alice, bob))["group_id"]
    settings = {"archived": True, "muted_until": 1_900_000_000_000, "sound": "bell"}
    response = await http.put(f"/v1/groups/{gid}/settings", json=settings, headers=bob.auth)
    assert response.status_code == 204
    assert (await _get(http, gid, bob)).json()["settings"] == settings
    assert (await _get(http, gid, alice)).json()["settings"]["archived"] is False


async def test_group_send_fans_out_to_every_other_member_device(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob, cara, dean = await _people(http, server)
    alice2 = await link(http, alice, registration_id=99)
    gid = UUID((await _create(http, alice, bob, cara))["group_id"])
    body = b"one sender key ciphertext"
    async with (
        online(server, alice) as a1,
        online(server, alice2) as a2,
        online(server, bob) as b,
        online(server, cara) as c,
        online(server, dean) as d,
    ):
        frame = GroupSend(id=5, group_id=gid, message_id=b"\x07" * 16, timestamp=42, body=body)
        await send_frame(a1, frame)
        assert await recv_frame(a1) == Result(5, True)
        for ws in (a2, b, c):
            got = await recv_frame(ws)
            assert isinstance(got, Envelope)
            assert (got.type, got.body, got.source, got.source_device, got.timestamp) == (
                EnvelopeType.SENDER_KEY,
                body,
                alice.account_id,
                1,
                42,
            )
            assert got.source_address == ALICE
        # a retry with the same message id enqueues nothing new
        await send_frame(a1, frame)
        assert await recv_frame(a1) == Result(5, True)
        # a non-member is refused, and nothing reaches anyone
        refused = GroupSend(id=6, group_id=gid, message_id=b"\x08" * 16, timestamp=1, body=b"x")
        await send_frame(d, refused)
        result = await recv_frame(d)
        assert isinstance(result, Result)
        assert not result.ok
        assert result.error is not None
        assert result.error.code == "not_a_member"
        # the next frame each member sees is the one sent after: nothing was queued between
        marker = GroupSend(id=7, group_id=gid, message_id=b"\x09" * 16, timestamp=2, body=b"m")
        await send_frame(b, marker)
        assert await recv_frame(b) == Result(7, True)
        for ws in (a1, a2, c):
            got = await recv_frame(ws)
            assert isinstance(got, Envelope)
            assert got.message_id == b"\x09" * 16


async def test_removed_member_gets_nothing_more(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob, cara, _ = await _people(http, server)
    gid = UUID((await _create(http, alice, bob, cara))["group_id"])
    response = await http.delete(f"/v1/groups/{gid}/members/{cara.account_id}", headers=alice.auth)
    assert response.status_code == 200
    async with online(server, alice) as a:
        frame = GroupSend(id=1, group_id=gid, message_id=b"\x01" * 16, timestamp=3, body=b"y")
        await send_frame(a, frame)
        assert await recv_frame(a) == Result(1, True)
    async with connect(server.ws_url, additional_headers=cara.auth) as c:
        assert await drain(c) == ([], Drained())
        frame = GroupSend(id=2, group_id=gid, message_id=b"\x02" * 16, timestamp=3, body=b"z")
        await send_frame(c, frame)
        result = await recv_frame(c)
        assert isinstance(result, Result)
        assert result.error is not None
        assert result.error.code == "not_a_member"
    async with connect(server.ws_url, additional_headers=bob.auth) as b:
        envelopes, _ = await drain(b)
        assert [e.message_id for e in envelopes] == [b"\x01" * 16]


async def test_malformed_group_send_is_answered(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, *_ = await _people(http, server)
    async with online(server, alice) as a:
        bad = {"op": "group_send", "id": 3, "group_id": "x", "message_id": b"1", "timestamp": 0}
        await a.send(msgspec.msgpack.encode(bad))
        result = await recv_frame(a)
        assert isinstance(result, Result)
        assert result.error is not None
        assert (result.id, result.error.code) == (3, "invalid_request")


async def test_blocked_or_unreachable_accounts_cannot_be_added(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob, cara, dean = await _people(http, server)
    # Bob blocks Alice; Dean (instagram) lets nobody of another app reach him
    response = await http.post(
        "/v1/blocks", json={"account_id": str(alice.account_id)}, headers=bob.auth
    )
    assert response.status_code == 204, response.text
    response = await http.put("/v1/settings", json={"reachability": "nobody"}, headers=dean.auth)
    assert response.status_code == 200, response.text
    for target in (bob, dean):
        body = {"name": "x", "members": [str(target.account_id)]}
        response = await http.post("/v1/groups", json=body, headers=alice.auth)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert (await http.get("/v1/groups", headers=alice.auth)).json() == {"groups": []}
    group = await _create(http, alice, cara)
    for target in (bob, dean):
        response = await http.post(
            f"/v1/groups/{group['group_id']}/members",
            json={"members": [str(target.account_id)]},
            headers=alice.auth,
        )
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    assert (await _get(http, group["group_id"], alice)).json() == group


async def test_openapi_documents_the_group_routes(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/groups"]) == {"get", "post"}
    assert "delete" in paths["/v1/groups/{group_id}/members/{account_id}"]
    assert "409" in paths["/v1/groups"]["post"]["responses"]  # group_full
    for path in ("/leave", "/admins", "/settings", "/members"):
        assert f"/v1/groups/{{group_id}}{path}" in paths


async def test_offline_members_get_a_push_with_their_group_flags(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    alice, bob, cara, dean = await _people(http, server)
    gid = (await _create(http, alice, bob, cara, dean))["group_id"]
    settings = {"muted_until": 4_000_000_000_000, "sound": "bell"}
    assert (
        await http.put(f"/v1/groups/{gid}/settings", json=settings, headers=bob.auth)
    ).status_code == 204
    response = await http.put(
        f"/v1/groups/{gid}/settings", json={"sound": "chime"}, headers=cara.auth
    )
    assert response.status_code == 204
    provider = server.app.state.metadata.push.provider
    before = len(provider.sent)
    async with online(server, alice) as a, online(server, dean) as d:
        frame = GroupSend(id=1, group_id=UUID(gid), message_id=b"\x05" * 16, timestamp=1, body=b"c")
        await send_frame(a, frame)
        assert await recv_frame(a) == Result(1, True)
        assert isinstance(await recv_frame(d), Envelope)
    pushed = {ref.account_id: payload for ref, payload in provider.sent[before:]}
    assert set(pushed) == {bob.account_id, cara.account_id}  # Dean was online
    assert (pushed[bob.account_id].silent, pushed[bob.account_id].sound) == (True, "none")
    assert (pushed[cara.account_id].silent, pushed[cara.account_id].sound) == (False, "chime")
    assert {p.conversation for p in pushed.values()} == {gid}
