"""The ``kurir client`` and ``kurir demo`` commands, run as a user would run them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from e2e.harness import BUDI, GUARD_SECONDS, RINA, ServerProcess


async def kurir(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kurir.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, COLUMNS="200", NO_COLOR="1"),
    )
    async with asyncio.timeout(GUARD_SECONDS):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_register_send_receive_and_safety_number(
    server: ServerProcess, tmp_path: Path
) -> None:
    budi = ["client", "--profile", str(tmp_path / "budi")]
    rina = ["client", "--profile", str(tmp_path / "rina"), "--json"]
    code, out, _ = await kurir(
        *budi, "--server", server.url, "register", "whatsapp:+62 812-3456-7890"
    )
    assert code == 0
    assert "registered whatsapp:+6281234567890" in out
    code, out, _ = await kurir(*rina, "--server", server.url, "register", "instagram:@Rina")
    assert code == 0
    assert json.loads(out)["address"] == RINA

    code, out, _ = await kurir(*budi, "send", RINA, "halo dari terminal")
    assert code == 0, out
    assert "sent to instagram:@rina" in out

    code, out, _ = await kurir(*rina, "receive")
    assert code == 0
    (line,) = out.splitlines()
    event = json.loads(line)
    assert (event["event"], event["sender"], event["text"]) == (
        "message",
        BUDI,
        "halo dari terminal",
    )
    code, out, _ = await kurir(*rina, "receive")
    assert (code, out) == (0, "")  # exactly once

    code, out, _ = await kurir(*budi, "--json", "receive")
    assert json.loads(out)["event"] == "delivered"

    _, budi_number, _ = await kurir(*budi, "--json", "safety-number", RINA)
    _, rina_number, _ = await kurir(*rina, "safety-number", BUDI)
    assert json.loads(budi_number)["safety_number"] == json.loads(rina_number)["safety_number"]


async def test_user_errors_are_one_line_without_a_traceback(
    server: ServerProcess, tmp_path: Path
) -> None:
    profile = ["client", "--profile", str(tmp_path / "p")]
    cases = [
        ([*profile, "send", RINA, "x"], 2, "not registered"),
        ([*profile, "--server", server.url, "register", "whatsapp:+1"], 2, "not a valid address"),
        ([*profile, "--server", server.url, "register", "nope"], 2, "app:identifier"),
        (
            [*profile, "--server", server.url, "register", RINA, "--code", "000000"],
            1,
            "invalid_code",
        ),
        (
            [*profile, "--server", server.url, "register", RINA, "--app-key", "x" * 20],
            1,
            "server refused",
        ),
        ([*profile, "--server", "http://127.0.0.1:9", "register", RINA], 1, "cannot reach"),
    ]
    for args, expected_code, message in cases:
        code, out, err = await kurir(*args)
        assert code == expected_code, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in out + err
        assert len(err.strip().splitlines()) == 1, err
    # a valid registration still works afterwards: the failures changed nothing
    code, _, _ = await kurir(*profile, "--server", server.url, "register", RINA)
    assert code == 0
    code, _, err = await kurir(*profile, "send", RINA, "x")
    assert code == 2
    assert "yourself" in err
    code, _, err = await kurir(*profile, "send", "instagram:@nobody", "x")
    assert code == 1
    assert "no one is registered as instagram:@nobody" in err


async def test_demo_runs_and_finds_no_plaintext_on_the_server() -> None:
    code, out, err = await kurir("demo")
    assert code == 0, out + err
    words = " ".join(out.replace("│", " ").split())  # the panels wrap at the terminal's width
    assert "for the 8 texts sent: none found" in words
    assert "Jadi dong!" in out  # what Rina wrote, as Budi read it
    assert "Traceback" not in out + err


async def test_a_changed_safety_number_blocks_sending_until_trusted(
    server: ServerProcess, tmp_path: Path
) -> None:
    budi = ["client", "--profile", str(tmp_path / "budi")]
    url = ["--server", server.url]
    assert (await kurir(*budi, *url, "register", BUDI))[0] == 0
    assert (await kurir("client", "--profile", str(tmp_path / "r1"), *url, "register", RINA))[
        0
    ] == 0
    assert (await kurir(*budi, "send", RINA, "satu"))[0] == 0
    # Rina registers again from a new phone: a new identity key
    assert (await kurir("client", "--profile", str(tmp_path / "r2"), *url, "register", RINA))[
        0
    ] == 0
    code, _, err = await kurir(*budi, "send", RINA, "dua")
    assert code == 1
    assert "safety number with instagram:@rina changed" in err
    assert "trust instagram:@rina" in err
    code, out, _ = await kurir(*budi, "--json", "trust", RINA)
    assert code == 0
    assert json.loads(out)["event"] == "trusted"
    assert (await kurir(*budi, "send", RINA, "dua"))[0] == 0
    code, out, _ = await kurir("client", "--profile", str(tmp_path / "r2"), "--json", "receive")
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["dua"]
