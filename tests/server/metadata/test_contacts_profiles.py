"""Address-book discovery (normalised numbers, reachability, rate limit) and profiles
(validated, re-encoded pictures without metadata; visibility follows reachability)."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from kurir.server.testing import RunningServer

from .peers import BUDI, MEGA, RINA, SARI, people


async def test_upload_normalises_and_finds_registered_reachable(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, sari, rina, mega = await people(mhttp, mserver, BUDI, SARI, RINA, MEGA)
    await mhttp.put("/v1/settings", json={"reachability": "nobody"}, headers=rina.auth)
    entries = [
        "+62 812-3456-7890",  # budi, international format with punctuation
        "0813 1111 2222",  # sari, national format (region ID)
        "instagram:@RINA",  # nobody: not revealed to another app
        "+62 811 0000 0000",  # not registered
        "+62 812 3456 7890",  # budi again: one entry
    ]
    r = await mhttp.post(
        "/v1/contacts", json={"entries": entries, "region": "ID"}, headers=mega.auth
    )
    assert r.status_code == 200, r.text
    stored = ["+6281234567890", "+6281311112222", RINA, "+6281100000000"]
    assert r.json()["stored"] == stored
    found = {(h["entry"], h["address"]) for h in r.json()["found"]}
    # budi and sari have the default (contacts) and mega is not theirs: not found either
    assert found == set()
    await mhttp.put("/v1/settings", json={"reachability": "everyone"}, headers=budi.auth)
    await mhttp.post("/v1/contacts", json={"entries": ["+62 813 1111 2222"]}, headers=sari.auth)
    r = await mhttp.post(
        "/v1/contacts", json={"entries": entries, "region": "ID"}, headers=mega.auth
    )
    found = {(h["entry"], h["address"]) for h in r.json()["found"]}
    assert found == {("+6281234567890", BUDI)}
    r = await mhttp.get("/v1/contacts", headers=mega.auth)
    assert r.json()["entries"] == stored


async def test_malformed_entries_and_floods_change_nothing(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    (budi,) = await people(mhttp, mserver, BUDI)
    r = await mhttp.post("/v1/contacts", json={"entries": ["+6281311112222"]}, headers=budi.auth)
    assert r.status_code == 200
    for body, where in (
        ({"entries": ["+6281311112222", "call me maybe"]}, "$.entries[1]"),
        ({"entries": ["0813 1111 2222"]}, "$.entries[0]"),  # national without a region
        ({"entries": ["+1 000"]}, "$.entries[0]"),
        ({"entries": ["tiktok:@x"]}, "$.entries[0]"),
        ({"entries": ["+6281311112222"], "region": "XX"}, "$.region"),
    ):
        r = await mhttp.post("/v1/contacts", json=body, headers=budi.auth)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request"), body
        assert where in r.json()["error"]["message"]
    r = await mhttp.post("/v1/contacts", json={"entries": ["1"] * 1001}, headers=budi.auth)
    assert r.status_code == 400
    # a flood of uploads: a burst, then 429 with Retry-After, and the list stays
    statuses = []
    for i in range(6):
        number = f"+62813111{i:05d}"
        r = await mhttp.post("/v1/contacts", json={"entries": [number]}, headers=budi.auth)
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    r = await mhttp.get("/v1/contacts", headers=budi.auth)
    assert r.json()["entries"] == ["+6281311100003"]


def _png_with_metadata(size: tuple[int, int] = (900, 600)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCamera"  # Make
    exif[0x0110] = "Model-1234"  # Model
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), comment=b"home address")
    return out.getvalue()


async def test_avatar_is_reencoded_without_metadata_and_follows_reachability(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    budi, rina, sari = await people(mhttp, mserver, BUDI, RINA, SARI)
    raw = _png_with_metadata()
    assert b"SecretCamera" in raw
    image = base64.b64encode(raw).decode()
    r = await mhttp.put("/v1/profile/avatar", json={"image": image}, headers=budi.auth)
    assert r.status_code == 204, r.text
    r = await mhttp.put("/v1/profile", json={"display_name": "  Budi  "}, headers=budi.auth)
    assert r.status_code == 204
    r = await mhttp.get(f"/v1/profile/{budi.account_id}", headers=budi.auth)
    body = r.json()
    assert (body["display_name"], body["avatar_type"]) == ("Budi", "image/jpeg")
    stored = base64.b64decode(body["avatar"])
    assert b"SecretCamera" not in stored
    assert b"home address" not in stored
    with Image.open(io.BytesIO(stored)) as clean:
        assert clean.size == (512, 341)
        assert not clean.getexif()
    # contacts-only: a stranger of another app does not see it; the same app does
    r = await mhttp.get(f"/v1/profile/{budi.account_id}", headers=rina.auth)
    assert r.status_code == 404
    r = await mhttp.get(f"/v1/profile/{budi.account_id}", headers=sari.auth)
    assert r.status_code == 200
    await mhttp.put("/v1/settings", json={"reachability": "everyone"}, headers=budi.auth)
    r = await mhttp.get(f"/v1/profile/{budi.account_id}", headers=rina.auth)
    assert r.json()["display_name"] == "Budi"


async def test_bad_avatars_and_names_change_nothing(
    mhttp: httpx.AsyncClient, mserver: RunningServer
) -> None:
    (budi,) = await people(mhttp, mserver, BUDI)
    small = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(small, format="PNG")
    r = await mhttp.put(
        "/v1/profile/avatar",
        json={"image": base64.b64encode(small.getvalue()).decode()},
        headers=budi.auth,
    )
    assert r.status_code == 204
    huge = io.BytesIO()
    Image.new("1", (5000, 10)).save(huge, format="PNG")
    bmp = io.BytesIO()
    Image.new("RGB", (10, 10)).save(bmp, format="BMP")
    png = small.getvalue()
    for data in (
        b"GIF89a not really",
        b"%PDF-1.4 hello",
        bmp.getvalue(),  # a real image of a format we do not take
        huge.getvalue(),  # too many pixels
        png[: len(png) // 2],  # truncated
        b"",
    ):
        r = await mhttp.put(
            "/v1/profile/avatar",
            json={"image": base64.b64encode(data).decode()},
            headers=budi.auth,
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request"), data[:8]
        assert "$.image" in r.json()["error"]["message"]
    oversized = base64.b64encode(b"\x89PNG" + b"\x00" * (512 * 1024)).decode()
    r = await mhttp.put("/v1/profile/avatar", json={"image": oversized}, headers=budi.auth)
    assert r.status_code == 400
    for name in ("x" * 65, "bad\x00name"):
        r = await mhttp.put("/v1/profile", json={"display_name": name}, headers=budi.auth)
        assert r.status_code == 400
    r = await mhttp.get(f"/v1/profile/{budi.account_id}", headers=budi.auth)
    assert (r.json()["display_name"], r.json()["avatar_type"]) == (None, "image/png")
    assert base64.b64decode(r.json()["avatar"]).startswith(b"\x89PNG")
