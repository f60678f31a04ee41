"""The server never holds plaintext: send known texts, then search every byte it wrote.

"Every byte" means every file under the server's data directory (the SQLite database, its
WAL and shared-memory files, anything else) taken twice, while messages wait in mailboxes and
after a graceful shutdown, and the server's complete log output. The texts are searched in the
encodings a careless server might use (UTF-8, UTF-16, base64, hex), whole and by their first
16 characters. A positive control searches a file holding the texts the same way and must find
them, so the search itself is known to work.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from pathlib import Path

from e2e.harness import BUDI, MEGA, RINA, MakeClient, ServerProcess, collect
from kurir.client.store import DB_FILE


def _needles(text: str) -> list[bytes]:
    found = []
    for part in (text, text[:16]):
        raw = part.encode()
        found += [
            raw,
            part.encode("utf-16-le"),
            base64.b64encode(raw),
            base64.urlsafe_b64encode(raw),
            raw.hex().encode(),
        ]
    return found


def _snapshot(root: Path) -> dict[str, bytes]:
    files = {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert files, f"nothing found under {root}"
    return files


def _leaks(files: dict[str, bytes], texts: list[str]) -> list[tuple[str, str]]:
    return [
        (name, text)
        for name, data in files.items()
        for text in texts
        if any(needle in data for needle in _needles(text))
    ]


async def test_no_plaintext_in_database_wal_or_logs(
    make_client: MakeClient, server: ServerProcess, tmp_path: Path
) -> None:
    clients = {a: await make_client(a) for a in (BUDI, MEGA, RINA)}
    texts: list[str] = []
    for sender, recipient in itertools.permutations(clients, 2):
        text = f"rahasia {secrets.token_hex(12)} dari {sender} untuk {recipient} ✉️"
        texts.append(text)
        await clients[sender].send_text(recipient, text)
    for client in clients.values():
        await collect(client, messages=2, receipts=2)

    # messages waiting in a mailbox: Rina is offline
    await clients[RINA].close()
    waiting = [f"titipan {secrets.token_hex(12)} nomor {i}" for i in range(3)]
    texts += waiting
    for text in waiting:
        await clients[BUDI].send_text(RINA, text)
    while_running = _snapshot(server.data_dir)
    assert any(name.endswith("-wal") for name in while_running), "expected a WAL file"

    rina = await make_client(RINA)
    got, _ = await collect(rina, messages=3)
    await collect(clients[BUDI], receipts=3)
    assert [e.body.text for e in got if hasattr(e.body, "text")] == waiting

    await server.stop()
    after_stop = _snapshot(server.data_dir)
    log = server.log_path.read_bytes()
    assert b"kurir listening" in log  # the log was captured

    assert _leaks(while_running, texts) == []
    assert _leaks(after_stop, texts) == []
    assert _leaks({"server log": log}, texts) == []

    # positive control: the search finds the texts in a file that holds them (the clients'
    # own stores no longer can: they are encrypted at rest, tests/client/test_store_at_rest*)
    control = tmp_path / "control"
    control.mkdir()
    (control / "texts").write_text("\n".join(texts[:2]))
    assert _leaks(_snapshot(control), texts[:2]) != []
    budi_store = tmp_path / "profiles" / BUDI.replace(":", "_") / DB_FILE
    assert _leaks(_snapshot(budi_store.parent), texts) == []
