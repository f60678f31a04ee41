"""Tests of the client store's encryption at rest (kurir.client.atrest and its use by the
store): real SQLite files in tmp_path, real AES-GCM and scrypt, no mocks.

The property under test: with the store key sealed by a `KeyProvider`, no secret the store
was given appears in any of its files (database, WAL, shared memory), the wrong key opens
nothing and changes nothing, and a sealed value moved to another row or column is refused.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from uuid import uuid4

import pytest

from kurir.client.atrest import (
    KeyFile,
    KeyProvider,
    Passphrase,
    StoreCipher,
    UnreadableValueError,
    WrongKeyError,
)
from kurir.client.group_store import SqliteSenderKeyStore
from kurir.client.store import (
    _MIGRATIONS,
    DB_FILE,
    SCHEMA_VERSION,
    Account,
    ClientStore,
    Contact,
    InboxKind,
)
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.sender_keys import create_sender_key_distribution_message

SECRET_KEY = bytes(range(1, 33))
"""Stands for an identity private key: 32 distinctive bytes."""
PASSWORD = "device-password-Zq8vT3"
ADDRESS = "whatsapp:+6281234567890"
TEXT = b"rahasia: the cake is in the second drawer"


def _clock() -> int:
    return 1_700_000_000_000


def _passphrase(text: str = "correct horse battery staple") -> Passphrase:
    return Passphrase(text, cost_log2=14)  # the minimum cost, to keep tests quick


def _account() -> Account:
    return Account(
        server_url="http://127.0.0.1:1",
        address=ADDRESS,
        account_id=uuid4(),
        device_id=1,
        password=PASSWORD,
        registration_id=42,
        identity_private=SECRET_KEY,
        identity_public=b"\x05" + b"\x02" * 32,
    )


def _fill(store: ClientStore) -> None:
    """Writes one secret of every sealed kind."""
    peer = uuid4()
    store.save_account(_account())
    store.put_prekey(1, SECRET_KEY + b"prekey")
    store.put_signed_prekey(2, SECRET_KEY + b"signed")
    store.put_kyber_prekey(3, SECRET_KEY + b"kyber", last_resort=True)
    store.put_session(str(peer), 1, SECRET_KEY + b"session")
    store.put_identity(str(peer), SECRET_KEY + b"identity")
    store.put_contact(Contact(ADDRESS, peer, (1,)))
    store.put_sent(b"m" * 16, peer, TEXT + b" sent", timestamp=5)
    store.add_to_inbox(
        kind=InboxKind.MESSAGE,
        source=peer,
        source_device=1,
        source_address=ADDRESS,
        message_id=b"r" * 16,
        timestamp=6,
        server_timestamp=7,
        content=TEXT + b" received",
    )


def _files(profile: Path) -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in profile.iterdir() if p.name.startswith(DB_FILE)}
    assert DB_FILE in found
    return found


def _leaks(profile: Path) -> list[tuple[str, bytes]]:
    needles = [SECRET_KEY, PASSWORD.encode(), ADDRESS.encode(), b"+6281234567890", TEXT]
    return [(n, x) for n, data in _files(profile).items() for x in needles if x in data]


@pytest.mark.parametrize("kind", ["key file", "passphrase"])
def test_no_secret_in_any_file_and_all_read_back(tmp_path: Path, kind: str) -> None:
    profile = tmp_path / "p"
    key: KeyProvider = KeyFile.beside(profile) if kind == "key file" else _passphrase()
    store = ClientStore.open(profile, _clock, key)
    _fill(store)
    assert any(name.endswith("-wal") for name in _files(profile))  # the WAL is searched too
    assert _leaks(profile) == []
    # positive control: a public value stored in the clear is found by the same search
    assert any(b"\x05" + b"\x02" * 32 in data for data in _files(profile).values())
    store.close()
    assert _leaks(profile) == []

    again = ClientStore.open(profile, _clock, key)
    account = again.account()
    assert account is not None
    assert (account.identity_private, account.password, account.address) == (
        SECRET_KEY,
        PASSWORD,
        ADDRESS,
    )
    assert again.prekey(1) == SECRET_KEY + b"prekey"
    assert again.signed_prekey(2) == SECRET_KEY + b"signed"
    assert again.kyber_prekey(3) == SECRET_KEY + b"kyber"
    contact = again.contact(ADDRESS)
    assert contact is not None
    assert again.contact_by_account(contact.account_id) == contact
    name = str(contact.account_id)
    assert again.session(name, 1) == SECRET_KEY + b"session"
    assert again.identity(name) == SECRET_KEY + b"identity"
    sent = again.sent(b"m" * 16)
    assert sent is not None
    assert sent.content == TEXT + b" sent"
    [item] = again.inbox()
    assert (item.content, item.source_address) == (TEXT + b" received", ADDRESS)
    again.close()


def test_wrong_passphrase_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = ClientStore.open(tmp_path, _clock, _passphrase())
    _fill(store)
    store.close()
    before = _files(tmp_path)
    with pytest.raises(WrongKeyError, match="passphrase does not open"):
        ClientStore.open(tmp_path, _clock, _passphrase("correct horse battery stapler"))
    with pytest.raises(WrongKeyError, match="protected by a passphrase, not a key file"):
        ClientStore.open(tmp_path, _clock, KeyFile(tmp_path.parent / "other.key"))
    assert not (tmp_path.parent / "other.key").exists()
    assert _files(tmp_path) == before
    again = ClientStore.open(tmp_path, _clock, _passphrase())
    assert again.account() == _account_like(again)
    again.close()


def _account_like(store: ClientStore) -> Account | None:
    account = store.account()
    assert account is not None
    assert account.identity_private == SECRET_KEY
    return account


def test_wrong_missing_or_shared_key_file_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    key_file = KeyFile.beside(profile)
    assert key_file.path == tmp_path / "p.key"
    ClientStore.open(profile, _clock, key_file).close()
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600
    before = _files(profile)

    other = KeyFile(tmp_path / "other.key")
    other.seal(os.urandom(32))  # creates a different key file
    with pytest.raises(WrongKeyError, match="key file does not open"):
        ClientStore.open(profile, _clock, other)
    with pytest.raises(WrongKeyError, match="protected by a key file, not a passphrase"):
        ClientStore.open(profile, _clock, _passphrase())

    key_file.path.chmod(0o644)
    with pytest.raises(WrongKeyError, match="readable by others"):
        ClientStore.open(profile, _clock, key_file)
    key_file.path.chmod(0o600)

    saved = key_file.path.read_bytes()
    key_file.path.unlink()
    with pytest.raises(WrongKeyError, match="is missing"):
        ClientStore.open(profile, _clock, key_file)
    assert not key_file.path.exists()  # opening never makes a new key for an old store
    assert _files(profile) == before

    key_file.path.write_bytes(saved)
    key_file.path.chmod(0o600)
    ClientStore.open(profile, _clock, key_file).close()


def test_a_value_moved_to_another_row_or_column_does_not_decrypt(tmp_path: Path) -> None:
    store = ClientStore.open(tmp_path, _clock, KeyFile.beside(tmp_path))
    _fill(store)
    store.put_session("alice", 1, b"alice's session")
    store.put_session("bob", 1, b"bob's session")
    db = sqlite3.connect(tmp_path / DB_FILE)
    with db:
        db.execute(
            "UPDATE sessions SET record = (SELECT record FROM sessions WHERE name = 'alice')"
            " WHERE name = 'bob'"
        )
        db.execute("UPDATE account SET password = identity_private")  # another column
        db.execute("UPDATE prekeys SET key_id = 9 WHERE key_id = 1")  # another key
        db.execute("UPDATE kyber_prekeys SET last_resort = 0")  # a changed key column
    db.close()
    assert store.session("alice", 1) == b"alice's session"
    with pytest.raises(UnreadableValueError, match=r"sessions\.record"):
        store.session("bob", 1)
    with pytest.raises(UnreadableValueError, match=r"account\.password"):
        store.account()
    with pytest.raises(UnreadableValueError, match=r"prekeys\.record"):
        store.prekey(9)
    with pytest.raises(UnreadableValueError):
        store.kyber_prekey(3)
    store.close()


def test_an_inbox_or_sent_value_moved_to_another_message_does_not_decrypt() -> None:
    store = ClientStore.in_memory(_clock)
    peer = uuid4()
    for i in (1, 2):
        store.put_sent(bytes([i]) * 16, peer, b"sent %d" % i, timestamp=i)
        store.add_to_inbox(
            kind=InboxKind.MESSAGE,
            source=peer,
            source_device=1,
            source_address=ADDRESS,
            message_id=bytes([i]) * 16,
            timestamp=i,
            server_timestamp=i,
            content=b"received %d" % i,
        )
    db = store.connection
    db.execute("UPDATE inbox SET content = (SELECT content FROM inbox WHERE timestamp = 1)")
    db.execute("UPDATE sent SET content = (SELECT content FROM sent WHERE sent_at = 1)")
    assert store.sent(b"\x01" * 16) is not None
    with pytest.raises(UnreadableValueError, match=r"sent\.content"):
        store.sent(b"\x02" * 16)
    with pytest.raises(UnreadableValueError, match=r"inbox\.content"):
        store.inbox()


def test_sender_key_records_are_sealed_to_their_row(tmp_path: Path) -> None:
    store = ClientStore.open(tmp_path, _clock, KeyFile.beside(tmp_path))
    keys = SqliteSenderKeyStore(store)
    me = ProtocolAddress(str(uuid4()), DeviceId(1))
    group = uuid4()
    with store.transaction():
        create_sender_key_distribution_message(me, group, keys, os.urandom)
    record = keys.load_sender_key(me, group)
    assert record is not None
    secret = record.serialize()
    assert not any(secret in data for data in _files(tmp_path).values())
    other = uuid4()
    store.connection.execute(
        "INSERT INTO group_sender_keys SELECT name, device_id, ?, record FROM group_sender_keys",
        (str(other),),
    )
    with pytest.raises(UnreadableValueError, match="group_sender_keys"):
        keys.load_sender_key(me, other)
    store.close()


def test_change_key_reseals_and_the_old_passphrase_stops_working(tmp_path: Path) -> None:
    old, new = _passphrase("old passphrase"), _passphrase("new passphrase")
    store = ClientStore.open(tmp_path, _clock, old)
    _fill(store)
    with pytest.raises(WrongKeyError):
        store.change_key(new, old)  # the caller must know the current key
    store.change_key(old, new)
    store.close()
    with pytest.raises(WrongKeyError):
        ClientStore.open(tmp_path, _clock, old)
    again = ClientStore.open(tmp_path, _clock, new)
    assert _account_like(again) is not None
    again.change_key(new, KeyFile.beside(tmp_path))
    again.close()
    ClientStore.open(tmp_path, _clock, KeyFile.beside(tmp_path)).close()


def _legacy_profile(profile: Path) -> None:
    """A profile as clients before encryption at rest wrote it: schema 1, all in the clear."""
    profile.mkdir()
    db = sqlite3.connect(profile / DB_FILE, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA secure_delete=OFF")  # the default of many SQLite builds
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    peer = str(uuid4())
    db.execute(
        "INSERT INTO account VALUES (1, 'http://127.0.0.1:1', ?, ?, 1, ?, 42, ?, ?, 0)",
        (ADDRESS, str(uuid4()), PASSWORD, SECRET_KEY, b"\x05" + b"\x02" * 32),
    )
    db.execute("INSERT INTO prekeys VALUES (1, ?, 0, NULL)", (SECRET_KEY + b"prekey",))
    db.execute("INSERT INTO kyber_prekeys VALUES (3, ?, 1, 0, NULL)", (SECRET_KEY + b"kyber",))
    db.execute("INSERT INTO sessions VALUES (?, 1, ?)", (peer, SECRET_KEY + b"session"))
    db.execute("INSERT INTO contacts VALUES (?, ?, '1', 0)", (ADDRESS, peer))
    db.execute(
        "INSERT INTO inbox (kind, source, source_device, source_address, message_id,"
        " timestamp, server_timestamp, content) VALUES ('message', ?, 1, ?, ?, 6, 7, ?)",
        (peer, ADDRESS, b"r" * 16, TEXT),
    )
    db.execute("INSERT INTO sent VALUES (?, ?, ?, 5)", (b"m" * 16, peer, TEXT + b" sent"))
    # handled messages: deleted, yet their bytes linger in free pages
    for i in range(8):
        db.execute(
            "INSERT INTO sent VALUES (?, ?, ?, 4)", (bytes([i]) * 16, peer, b"handled" * 2000)
        )
    db.execute("DELETE FROM sent WHERE sent_at = 4")
    db.execute(
        "CREATE TABLE group_sender_keys (name TEXT NOT NULL, device_id INTEGER NOT NULL,"
        " distribution_id TEXT NOT NULL, record BLOB NOT NULL,"
        " PRIMARY KEY (name, device_id, distribution_id))"
    )
    db.execute("INSERT INTO group_sender_keys VALUES (?, 1, 'g', ?)", (peer, SECRET_KEY + b"gk"))
    db.close()


def test_a_profile_from_before_encryption_is_encrypted_in_place(tmp_path: Path) -> None:
    profile = tmp_path / "old"
    _legacy_profile(profile)
    assert _leaks(profile) != []  # the control: the old profile holds them in the clear
    assert any(b"handled" in data for data in _files(profile).values())

    store = ClientStore.open(profile, _clock, KeyFile.beside(profile))
    assert _leaks(profile) == []  # database, WAL and shared memory, right after the migration
    assert not any(b"handled" in data for data in _files(profile).values())
    (version,) = store.connection.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION
    account = store.account()
    assert account is not None
    assert (account.identity_private, account.password, account.address) == (
        SECRET_KEY,
        PASSWORD,
        ADDRESS,
    )
    assert store.prekey(1) == SECRET_KEY + b"prekey"
    assert store.kyber_prekey(3) == SECRET_KEY + b"kyber"
    [peer] = [r[0] for r in store.connection.execute("SELECT name FROM sessions")]
    assert store.session(peer, 1) == SECRET_KEY + b"session"
    assert store.contact(ADDRESS) is None  # a cache: dropped, refilled from the directory
    [item] = store.inbox()
    assert (item.content, item.source_address) == (TEXT, ADDRESS)
    sent = store.sent(b"m" * 16)
    assert sent is not None
    assert sent.content == TEXT + b" sent"
    store.close()
    assert _leaks(profile) == []

    reopened = ClientStore.open(profile, _clock, KeyFile.beside(profile))
    assert reopened.session(peer, 1) == SECRET_KEY + b"session"
    reopened.close()


def test_a_failed_migration_leaves_the_old_profile_whole(tmp_path: Path) -> None:
    profile = tmp_path / "old"
    _legacy_profile(profile)
    db = sqlite3.connect(profile / DB_FILE)
    db.execute("CREATE TABLE store_key (x)")  # makes migration 2 fail half-way
    db.commit()
    db.close()
    with pytest.raises(Exception, match="store_key"):
        ClientStore.open(profile, _clock, KeyFile.beside(profile))
    db = sqlite3.connect(profile / DB_FILE)
    (version,) = db.execute("PRAGMA user_version").fetchone()
    (password,) = db.execute("SELECT password FROM account").fetchone()
    db.close()
    assert (version, password) == (1, PASSWORD)


def test_store_cipher_binds_values_to_where_they_are() -> None:
    cipher = StoreCipher(bytes(32))
    sealed = cipher.seal(b"v", "t", "c", 1)
    assert cipher.open(sealed, "t", "c", 1) == b"v"
    for where in (("t", "c", 2), ("t", "d", 1), ("u", "c", 1), ("t", "c1", "")):
        with pytest.raises(UnreadableValueError):
            cipher.open(sealed, *where)
    assert cipher.seal(b"v", "t", "c", 1) != sealed  # a fresh nonce every time
    with pytest.raises(UnreadableValueError):
        StoreCipher(bytes([1]) * 32).open(sealed, "t", "c", 1)
    assert cipher.index("a") == cipher.index("a") != StoreCipher(bytes([1]) * 32).index("a")
    with pytest.raises(UnreadableValueError):
        cipher.open(b"\x02" + sealed[1:], "t", "c", 1)


def test_passphrase_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="empty"):
        Passphrase("")
    with pytest.raises(ValueError, match="cost_log2"):
        Passphrase("x", cost_log2=30)
    sealed = bytearray(_passphrase().seal(bytes(32)))
    sealed[len(b"scrypt1")] = 30  # a tampered file asking for 2**30 * 1 KiB of memory
    with pytest.raises(WrongKeyError, match="out of range"):
        _passphrase().unseal(bytes(sealed))
    assert "staple" not in repr(_passphrase())
