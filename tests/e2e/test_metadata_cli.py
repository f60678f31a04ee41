"""``kurir client`` metadata commands as a user runs them, across apps: a message request,
blocking, archive, a custom sound, contacts and the transparency report."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.harness import BUDI, MEGA, RINA, ServerProcess
from e2e.test_cli import kurir

SECRET = "rahasia 42 jangan dibaca"


def _events(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_requests_blocks_archive_sound_contacts_report(
    server: ServerProcess, tmp_path: Path
) -> None:
    budi = ["client", "--profile", str(tmp_path / "budi"), "--json"]
    rina = ["client", "--profile", str(tmp_path / "rina"), "--json"]
    mega = ["client", "--profile", str(tmp_path / "mega"), "--json"]
    for who, address in ((budi, BUDI), (rina, RINA), (mega, MEGA)):
        code, out, err = await kurir(*who, "--server", server.url, "register", address)
        assert code == 0, err
    # first contact from another app lands as a message request
    assert (await kurir(*rina, "send", BUDI, SECRET))[0] == 0
    assert (await kurir(*mega, "send", BUDI, "halo dari messenger"))[0] == 0
    code, out, _ = await kurir(*budi, "receive")
    assert [e["text"] for e in _events(out) if e["event"] == "message"] == [
        SECRET,
        "halo dari messenger",
    ]
    code, out, _ = await kurir(*budi, "requests")
    assert sorted(str(e["address"]) for e in _events(out)) == sorted([RINA, MEGA])
    assert (await kurir(*budi, "accept", RINA))[0] == 0
    # blocking across apps: mega sees "sent", nothing reaches budi, no receipt comes back
    assert (await kurir(*budi, "block", MEGA))[0] == 0
    code, out, _ = await kurir(*mega, "receive")  # the receipt of the first message
    assert [e["event"] for e in _events(out)] == ["delivered"]
    code, out, _ = await kurir(*mega, "send", BUDI, "masih di sana?")
    assert (code, _events(out)[0]["event"]) == (0, "sent")
    code, out, _ = await kurir(*budi, "receive")
    assert (code, out) == (0, "")
    code, out, _ = await kurir(*mega, "receive")
    assert (code, out) == (0, "")
    # archive and a custom sound for rina's chat
    code, out, _ = await kurir(*budi, "archive", RINA)
    assert (code, _events(out)[0]["event"]) == (0, "archived")
    code, out, _ = await kurir(*budi, "sound", RINA, "kentongan")
    assert (code, _events(out)[0]["sound"]) == (0, "kentongan")
    code, _, err = await kurir(*budi, "sound", RINA, "airhorn")
    assert code == 1
    assert "sound" in err
    code, out, _ = await kurir(*budi, "conversations")
    chats = {e["address"]: e for e in _events(out)}
    assert (chats[RINA]["archived"], chats[RINA]["sound"], chats[RINA]["received"]) == (
        True,
        "kentongan",
        1,
    )
    assert chats[MEGA]["state"] == "request"
    # contacts: a malformed number is refused with a clear error and changes nothing
    code, _, err = await kurir(*budi, "contacts", "+62 812 0000 1111", "not-a-number")
    assert code == 1
    assert "entries[1]" in err
    code, out, _ = await kurir(*budi, "contacts", "0812 3456 7890", RINA, "--region", "ID")
    assert code == 0
    assert _events(out)[0]["entries"] == ["+6281234567890", RINA]
    # the transparency report: JSON and a readable table, never the message text
    code, out, _ = await kurir(*budi, "report")
    assert code == 0
    (report,) = _events(out)
    tables = report["tables"]
    assert isinstance(tables, dict)
    assert {"accounts", "devices", "blocks", "conversations", "contacts"} <= set(tables)
    assert SECRET not in out
    code, out, _ = await kurir("client", "--profile", str(tmp_path / "budi"), "report")
    assert code == 0
    assert "What the server stores about you" in out
    assert "conversations" in out
    assert "kentongan" in out
    assert SECRET not in out
    await server.stop()
    assert SECRET.encode() not in server.log_path.read_bytes()
