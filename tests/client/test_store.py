"""Tests of kurir.client.store: a real SQLite file in tmp_path."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from kurir.client.atrest import KeyFile
from kurir.client.errors import StoreError
from kurir.client.store import (
    DB_FILE,
    MAX_SENT,
    SCHEMA_VERSION,
    Account,
    ClientStore,
    Contact,
    InboxKind,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _account() -> Account:
    return Account(
        server_url="http://127.0.0.1:1",
        address="instagram:@rina",
        account_id=uuid4(),
        device_id=1,
        password="p" * 22,
        registration_id=42,
        identity_private=b"\x01" * 32,
        identity_public=b"\x05" + b"\x02" * 32,
    )


def _add(store: ClientStore, source: UUID, message_id: bytes, text: bytes = b"x") -> bool:
    return store.add_to_inbox(
        kind=InboxKind.MESSAGE,
        source=source,
        source_device=1,
        source_address="whatsapp:+6281234567890",
        message_id=message_id,
        timestamp=1,
        server_timestamp=2,
        content=text,
    )


def test_account_survives_reopen_and_file_is_private(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    store = ClientStore.open(profile, FakeClock(), KeyFile.beside(profile))
    assert store.account() is None
    account = _account()
    store.save_account(account)
    store.close()
    assert stat.S_IMODE((profile / DB_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(profile.stat().st_mode) == 0o700
    again = ClientStore.open(profile, FakeClock(), KeyFile.beside(profile))
    assert again.account() == account
    again.close()


def test_password_and_private_key_are_not_in_repr() -> None:
    text = repr(_account())
    assert "ppppp" not in text
    assert "identity_private" not in text


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    ClientStore.open(tmp_path, FakeClock(), KeyFile.beside(tmp_path)).close()
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer client"):
        ClientStore.open(tmp_path, FakeClock(), KeyFile.beside(tmp_path))


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a usable kurir store"):
        ClientStore.open(tmp_path, FakeClock(), KeyFile.beside(tmp_path))


def test_transaction_rolls_back_everything_on_error() -> None:
    store = ClientStore.in_memory(FakeClock())

    def fail_after_writing() -> None:
        with store.transaction():
            store.put_session("peer", 1, b"record")
            assert _add(store, uuid4(), bytes(16))
            raise RuntimeError("decryption failed later")

    with pytest.raises(RuntimeError):
        fail_after_writing()
    assert store.session("peer", 1) is None
    assert store.inbox() == []


def test_inbox_keeps_order_and_suppresses_duplicates() -> None:
    store = ClientStore.in_memory(FakeClock())
    alice, bob = uuid4(), uuid4()
    ids = [bytes([i]) * 16 for i in range(3)]
    assert _add(store, alice, ids[0], b"a")
    assert _add(store, alice, ids[1], b"b")
    assert not _add(store, alice, ids[0], b"a")
    assert _add(store, bob, ids[0], b"c")  # same id from another sender is another message
    items = store.inbox()
    assert [i.content for i in items] == [b"a", b"b", b"c"]
    store.remove_from_inbox(items[0].id)
    assert [i.content for i in store.inbox()] == [b"b", b"c"]
    assert not _add(store, alice, ids[0], b"a")  # still a duplicate after it was handled
    assert [i.content for i in store.inbox(after=items[1].id)] == [b"c"]


def test_sent_store_is_bounded() -> None:
    store = ClientStore.in_memory(FakeClock())
    peer = uuid4()
    for i in range(MAX_SENT + 5):
        store.put_sent(i.to_bytes(16, "big"), peer, b"content", timestamp=1000 + i)
    assert store.sent((0).to_bytes(16, "big")) is None
    newest = store.sent((MAX_SENT + 4).to_bytes(16, "big"))
    assert newest is not None
    assert newest.recipient == peer
    assert store.sent_to(peer, 1000 + MAX_SENT + 4) == newest
    assert store.sent_to(peer, 1000) is None  # forgotten
    assert store.sent_to(uuid4(), 1000 + MAX_SENT + 4) is None  # only to its recipient
    (count,) = store._db.execute("SELECT count(*) FROM sent").fetchone()
    assert count == MAX_SENT


def test_sessions_identities_contacts_prekeys() -> None:
    store = ClientStore.in_memory(FakeClock())
    store.put_session("peer", 2, b"s2")
    store.put_session("peer", 1, b"s1")
    assert store.session_devices("peer") == [1, 2]
    store.delete_session("peer", 2)
    assert store.session_devices("peer") == [1]

    assert store.put_identity("peer", b"k1") is False
    assert store.put_identity("peer", b"k1") is False
    assert store.put_identity("peer", b"k2") is True
    assert store.identity("peer") == b"k2"

    account = uuid4()
    store.put_contact(Contact("messenger:1000423", account, (2, 1)))
    assert store.contact("messenger:1000423") == Contact("messenger:1000423", account, (1, 2))
    assert store.contact_by_account(account) == Contact("messenger:1000423", account, (1, 2))

    first = store.next_id("prekey", 100)
    assert first == 1
    assert store.next_id("prekey", 100) == 101
    store.put_prekey(1, b"pk")
    store.put_kyber_prekey(7, b"kk", last_resort=False)
    store.put_kyber_prekey(8, b"lr", last_resort=True)
    assert store.prekey_counts() == (1, 1)
    store.use_kyber_prekey(8)
    store.use_kyber_prekey(7)
    store.remove_prekey(1)
    assert store.kyber_prekey(8) == b"lr"
    assert store.kyber_prekey(7) is None
    assert store.prekey_counts() == (0, 0)


def test_dedup_set_is_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import kurir.client.store as store_module

    monkeypatch.setattr(store_module, "MAX_SEEN", 10)
    monkeypatch.setattr(store_module, "PRUNE_EVERY", 1)
    store = ClientStore.in_memory(FakeClock())
    sender = uuid4()
    ids = [i.to_bytes(16, "big") for i in range(20)]
    for message_id in ids:
        assert _add(store, sender, message_id)
    (count,) = store._db.execute("SELECT count(*) FROM seen").fetchone()
    assert count == 10
    assert not store.seen(InboxKind.MESSAGE, sender, 1, ids[0])
    assert store.seen(InboxKind.MESSAGE, sender, 1, ids[-1])
