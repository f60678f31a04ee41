"""The HTTP API over real sockets: registration, keys, bundles, directory, errors."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from kurir.server.testing import RunningServer, start_server

from .helpers import app_key, ec_key, key_upload, register

WA = "whatsapp:+6281234567890"
IG = "instagram:@rina"


async def test_health_and_apps(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    apps = (await http.get("/v1/apps")).json()["apps"]
    assert [a["id"] for a in apps] == ["whatsapp", "messenger", "instagram"]
    assert all("client_key" not in a for a in apps)


async def test_register_and_list_devices(http: httpx.AsyncClient, server: RunningServer) -> None:
    device = await register(http, server, "whatsapp:+62 812-3456-7890", device_name="pixel")
    response = await http.get("/v1/devices", headers=device.auth)
    assert response.status_code == 200
    (info,) = response.json()["devices"]
    assert (info["device_id"], info["name"], info["registration_id"]) == (1, "pixel", 1234)


async def test_reregistration_keeps_account_and_revokes_old_password(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    first = await register(http, server, IG)
    second = await register(http, server, IG, registration_id=99)
    assert second.account_id == first.account_id
    assert (await http.get("/v1/devices", headers=first.auth)).status_code == 401
    assert (await http.get("/v1/devices", headers=second.auth)).status_code == 200


async def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text


async def test_registration_errors_change_nothing(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    key = app_key(server, WA)
    good = {"address": WA, "code": "123456", "password": "A" * 32, "registration_id": 5}
    await _error(await http.post("/v1/accounts", json=good, headers=key), 403, "invalid_code")
    await http.post("/v1/verification", json={"address": WA}, headers=key)
    await _error(
        await http.post("/v1/accounts", json={**good, "code": "000000"}, headers=key),
        403,
        "invalid_code",
    )
    await _error(
        await http.post("/v1/accounts", json={**good, "password": "A" * 21 + "!"}, headers=key),
        400,
        "invalid_request",
    )
    await _error(
        await http.post("/v1/accounts", json=good, headers=app_key(server, IG)), 403, "wrong_app"
    )
    await _error(await http.post("/v1/accounts", json=good), 403, "forbidden")
    await _error(
        await http.post("/v1/accounts", json={**good, "address": "whatsapp:123"}, headers=key),
        400,
        "invalid_address",
    )
    await _error(
        await http.post("/v1/accounts", json={**good, "address": "telegram:@x"}, headers=key),
        400,
        "unknown_app",
    )
    await _error(await http.post("/v1/accounts", content=b"{", headers=key), 400, "invalid_request")
    await _error(
        await http.post("/v1/accounts", json={**good, "registration_id": 0}, headers=key),
        400,
        "invalid_request",
    )
    # nothing was registered by any of that
    probe = await register(http, server, IG)
    found = await http.post("/v1/directory", json={"addresses": [WA]}, headers=probe.auth)
    assert found.json() == {"results": []}
    # and the pending code still works
    assert (await http.post("/v1/accounts", json=good, headers=key)).status_code == 200


async def test_auth_errors(http: httpx.AsyncClient, server: RunningServer) -> None:
    device = await register(http, server, IG)
    await _error(await http.get("/v1/devices"), 401, "unauthorized")
    await _error(
        await http.get("/v1/devices", headers={"Authorization": "Basic !!"}), 401, "unauthorized"
    )
    wrong = device.auth["Authorization"][:-4] + "AAAA"
    await _error(
        await http.get("/v1/devices", headers={"Authorization": wrong}), 401, "unauthorized"
    )


async def test_keys_upload_count_and_bundle(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice = await register(http, server, WA)
    bob = await register(http, server, IG, registration_id=77)
    await _error(
        await http.put("/v1/keys", json={"one_time_prekeys": []}, headers=bob.auth),
        422,
        "keys_not_set",
    )
    upload = key_upload(7, ec=range(1, 3), pq=range(10, 11))
    assert (await http.put("/v1/keys", json=upload, headers=bob.auth)).status_code == 204
    assert (await http.get("/v1/keys/count", headers=bob.auth)).json() == {"ec": 2, "pq": 1}

    url = f"/v1/keys/{bob.account_id}/*"
    first = (await http.get(url, headers=alice.auth)).json()
    assert base64.b64decode(first["identity_key"]) == ec_key(7)
    (dev,) = first["devices"]
    assert (dev["device_id"], dev["registration_id"]) == (1, 77)
    assert dev["prekey"]["key_id"] == 1
    assert dev["pq_prekey"]["key_id"] == 10
    assert dev["signed_prekey"]["key_id"] == 1
    second = (await http.get(f"/v1/keys/{bob.account_id}/1", headers=alice.auth)).json()
    assert second["devices"][0]["prekey"]["key_id"] == 2
    assert second["devices"][0]["pq_prekey"]["key_id"] == 2  # the last-resort key
    third = (await http.get(url, headers=alice.auth)).json()
    assert third["devices"][0]["prekey"] is None
    assert (await http.get("/v1/keys/count", headers=bob.auth)).json() == {"ec": 0, "pq": 0}

    await _error(
        await http.get(f"/v1/keys/{bob.account_id}/2", headers=alice.auth), 404, "not_found"
    )
    await _error(
        await http.get(f"/v1/keys/{alice.account_id}/*", headers=bob.auth), 404, "not_found"
    )
    await _error(await http.get("/v1/keys/nope/1", headers=alice.auth), 400, "invalid_request")
    await _error(
        await http.get(f"/v1/keys/{bob.account_id}/0", headers=alice.auth), 400, "invalid_request"
    )


async def test_identity_key_cannot_change(http: httpx.AsyncClient, server: RunningServer) -> None:
    bob = await register(http, server, IG)
    assert (await http.put("/v1/keys", json=key_upload(7), headers=bob.auth)).status_code == 204
    await _error(
        await http.put("/v1/keys", json=key_upload(8), headers=bob.auth),
        409,
        "identity_key_changed",
    )
    bad_key = {"identity_key": base64.b64encode(bytes(32)).decode()}
    await _error(await http.put("/v1/keys", json=bad_key, headers=bob.auth), 400, "invalid_request")
    dup = {
        "one_time_prekeys": [{"key_id": 1, "public_key": base64.b64encode(ec_key(1)).decode()}] * 2
    }
    await _error(await http.put("/v1/keys", json=dup, headers=bob.auth), 400, "invalid_request")


async def test_directory(http: httpx.AsyncClient, server: RunningServer) -> None:
    alice = await register(http, server, WA)
    bob = await register(http, server, IG)
    response = await http.post(
        "/v1/directory",
        json={
            "addresses": [
                "instagram:@RINA",
                "messenger:42",
                "garbage",
                IG,
                "whatsapp:+62 812 3456 7890",
            ]
        },
        headers=bob.auth,
    )
    results = response.json()["results"]
    assert results == [
        {"address": IG, "account_id": str(bob.account_id), "devices": [1]},
        {"address": WA, "account_id": str(alice.account_id), "devices": [1]},
    ]


async def test_oversized_body_refused(http: httpx.AsyncClient, server: RunningServer) -> None:
    bob = await register(http, server, IG)
    response = await http.post("/v1/directory", content=b"x" * (1024 * 1024 + 1), headers=bob.auth)
    await _error(response, 413, "payload_too_large")


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    await _error(await http.get("/v1/nothing"), 404, "not_found")
    await _error(await http.delete("/health"), 405, "method_not_allowed")


async def test_openapi_is_generated_from_types(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) >= {
        "/v1/accounts",
        "/v1/keys",
        "/v1/keys/{account_id}/{device_id}",
        "/v1/ws",
    }
    schemas = doc["components"]["schemas"]
    assert (
        schemas["KeyUpload"]["properties"]["identity_key"]["anyOf"][0]["contentEncoding"]
        == "base64"
    )
    put_keys = doc["paths"]["/v1/keys"]["put"]
    assert put_keys["security"] == [{"deviceBasic": []}]
    assert "409" in put_keys["responses"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas


async def test_verification_rate_limited(http: httpx.AsyncClient, server: RunningServer) -> None:
    key = app_key(server, WA)
    statuses = [
        (await http.post("/v1/verification", json={"address": WA}, headers=key)).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    limited = await http.post("/v1/verification", json={"address": WA}, headers=key)
    assert int(limited.headers["retry-after"]) >= 1


async def test_logs_carry_no_identifiers(
    http: httpx.AsyncClient, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    device = await register(http, server, WA)
    await http.put("/v1/keys", json=key_upload(3), headers=device.auth)
    await http.get(f"/v1/keys/{device.account_id}/*", headers=device.auth)
    server_records = [r for r in caplog.records if r.name.startswith(("kurir", "uvicorn"))]
    text = "\n".join(r.getMessage() for r in server_records if r.levelno >= logging.INFO)
    for secret in (str(device.account_id), "6281234567890", device.password, UUID(int=0).hex):
        assert secret not in text


async def test_development_verifier_warns_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with start_server(tmp_path):
        pass
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "kurir.server"
    ]
    assert any("DEVELOPMENT MODE" in r.getMessage() for r in warnings)
