"""Misuse of the `Client` is refused clearly, before anything goes on the network."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import pytest

from kurir.client.atrest import KeyFile
from kurir.client.client import Client
from kurir.client.errors import NotRegisteredError, UsageError
from kurir.client.store import Account, ClientStore

UNREACHABLE = "http://127.0.0.1:9"


async def test_a_new_profile_needs_a_server_and_a_client_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no server URL"):
        await Client.open(tmp_path / "p")
    async with await Client.open(tmp_path / "p", UNREACHABLE) as client:
        with pytest.raises(UsageError, match="no client key"):
            await client.register("instagram:@rina")
        with pytest.raises(NotRegisteredError):
            await client.send_text("instagram:@rina", "x")
        with pytest.raises(NotRegisteredError):
            await client.connect()


async def test_missing_profiles_are_not_created_on_request(tmp_path: Path) -> None:
    with pytest.raises(NotRegisteredError):
        await Client.open(tmp_path / "nothing", UNREACHABLE, create=False)
    assert not (tmp_path / "nothing").exists()


async def test_a_profile_stays_on_its_server(tmp_path: Path) -> None:
    store = ClientStore.open(tmp_path, lambda: 0, KeyFile.beside(tmp_path))
    store.save_account(
        Account(
            server_url="http://127.0.0.1:1",
            address="instagram:@rina",
            account_id=uuid4(),
            device_id=1,
            password="p" * 22,
            registration_id=1,
            identity_private=b"\x01" * 32,
            identity_public=b"\x05" + b"\x02" * 32,
        )
    )
    store.close()
    with pytest.raises(UsageError, match=re.escape("registered on http://127.0.0.1:1")):
        await Client.open(tmp_path, "http://127.0.0.1:2")
    async with await Client.open(tmp_path) as client:  # the remembered server
        with pytest.raises(UsageError, match="not connected"):
            await client.send_text("whatsapp:+6281234567890", "x")
