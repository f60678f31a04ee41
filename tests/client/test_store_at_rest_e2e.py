"""End to end: two SDK clients and a real server (in-process, real sockets on 127.0.0.1).

After real use (register, start a session, send, receive), no known secret appears in any of
either client's store files: not an identity private key, not the device password, not the
plaintext that was sent and received, not the peer's address. A restart with the wrong key
is refused and changes nothing; with the right key the clients keep their sessions and go on
messaging. One client seals its store with a passphrase, the other with a key file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from kurir.client.atrest import KeyFile, KeyProvider, Passphrase, WrongKeyError
from kurir.client.client import Client
from kurir.client.content import Text
from kurir.client.events import DeliveryEvent, Event, MessageEvent
from kurir.client.store import DB_FILE, ClientStore
from kurir.server.config import load_apps
from kurir.server.testing import start_server

RINA = "instagram:@rina"
BUDI = "whatsapp:+6281234567890"
GUARD_SECONDS = 60.0
"""Only a guard against a hung test; no assertion depends on time."""


def _app_key(address: str) -> str:
    app = load_apps().get(address.partition(":")[0])
    assert app is not None
    return app.client_key


async def _next(client: Client, kind: type[Event]) -> Event:
    """The next event of ``kind`` (delivery receipts on the way are handled and skipped)."""
    async with asyncio.timeout(GUARD_SECONDS):
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event
            assert isinstance(event, DeliveryEvent), event
            client.handled(event)


def _files(profiles: Iterable[Path], *, open_store: bool = False) -> dict[str, bytes]:
    """Every file of the stores (a WAL exists while a store is open; closing removes it)."""
    found = {
        str(p): p.read_bytes()
        for profile in profiles
        for p in profile.iterdir()
        if p.name.startswith(DB_FILE)
    }
    assert not open_store or any(name.endswith("-wal") for name in found)
    return found


def _leaks(files: dict[str, bytes], secrets: list[bytes]) -> list[tuple[str, bytes]]:
    return [(name, s) for name, data in files.items() for s in secrets if s in data]


async def _open(profile: Path, url: str, address: str, key: KeyProvider) -> Client:
    return await Client.open(profile, url, app_key=_app_key(address), key=key)


async def test_secrets_never_reach_the_store_files_and_a_restart_keeps_the_session(
    tmp_path: Path,
) -> None:
    rina_profile, budi_profile = tmp_path / "rina", tmp_path / "budi"
    rina_key = Passphrase("rina's long passphrase", cost_log2=14)
    budi_key = KeyFile(tmp_path / "keys" / "budi.key")
    text = "rahasia: kuenya di laci kedua"
    async with start_server(tmp_path / "server") as server:
        url = server.base_url
        rina = await _open(rina_profile, url, RINA, rina_key)
        budi = await _open(budi_profile, url, BUDI, budi_key)
        await rina.register(RINA)
        await budi.register(BUDI)
        for client in (rina, budi):
            await client.connect()
        await rina.send_text(BUDI, text)
        received = await _next(budi, MessageEvent)
        assert isinstance(received, MessageEvent)
        assert received.body == Text(text)

        # The message is in Budi's inbox (not yet handled) and in Rina's recently sent store.
        secrets = [text.encode(), text.encode("utf-16-le"), BUDI.encode(), RINA.encode()]
        for client in (rina, budi):
            account = client.account
            assert account is not None
            secrets += [account.identity_private, account.password.encode()]
        files = _files([rina_profile, budi_profile], open_store=True)
        assert _leaks(files, secrets) == []
        # positive control: the same search finds a value kept in the clear (a public key)
        assert rina.account is not None
        assert _leaks(files, [rina.account.identity_public]) != []

        budi.handled(received)
        rina_account = str(rina.account.account_id)
        await rina.close()
        await budi.close()
        files = _files([rina_profile, budi_profile])
        assert _leaks(files, secrets) == []

        # Restart: the wrong key opens nothing and changes nothing.
        before = _files([rina_profile])
        for wrong in (Passphrase("rina's long passphrase!", cost_log2=14), budi_key):
            try:
                await _open(rina_profile, url, RINA, wrong)
            except WrongKeyError:
                pass
            else:
                raise AssertionError("the wrong key opened the profile")
        assert _files([rina_profile]) == before

        # With the right key the session is the one stored before the restart.
        store = ClientStore.open(budi_profile, lambda: 0, budi_key)
        session_before = store.session(rina_account, 1)
        store.close()
        assert session_before is not None

        rina = await _open(rina_profile, url, RINA, rina_key)
        budi = await _open(budi_profile, url, BUDI, budi_key)
        for client in (rina, budi):
            await client.connect()
        await budi.send_text(RINA, "balasan setelah restart")
        reply = await _next(rina, MessageEvent)
        assert isinstance(reply, MessageEvent)
        assert reply.body == Text("balasan setelah restart")
        rina.handled(reply)
        await rina.send_text(BUDI, "dan sekali lagi")
        again = await _next(budi, MessageEvent)
        assert isinstance(again, MessageEvent)
        assert again.body == Text("dan sekali lagi")
        budi.handled(again)
        await rina.close()
        await budi.close()

    store = ClientStore.open(budi_profile, lambda: 0, budi_key)
    session_after = store.session(rina_account, 1)
    store.close()
    assert session_after is not None
    assert session_after != session_before  # the same session, ratcheted on
    assert _leaks(_files([rina_profile, budi_profile]), secrets) == []
