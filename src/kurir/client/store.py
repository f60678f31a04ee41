"""The client's local store: one SQLite file in the profile directory.

Owns: the schema and its numbered forward-only migrations, transactions, and every row the
client keeps: the account's credentials, its own identity key pair and prekeys, sessions,
trusted identities, the contact (address) cache, the received-message dedup set, the inbox of
decrypted messages not yet handed to the application, and a bounded store of recently sent
plaintexts. It knows no networking and no protocol rules: `kurir.client.keystore` adapts it to
the Signal store Protocols and the `Client` decides what to keep.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so a committed transaction
survives a crash. The client commits a decrypted message (with the session state that decrypting
it produced) in one transaction *before* acknowledging its envelope to the server.

At rest (docs/threat-model.md §Client device): the file is created ``0600`` in a ``0700``
directory, and every secret or private value in it is sealed with the store key
(`kurir.client.atrest`): private keys and prekey records, session and sender-key records, the
device password, our address, trusted identity keys, the inbox's plaintexts and sender
addresses, the recently sent plaintexts, and contact addresses (found through a blind index).
Each is AES-256-GCM bound to its table, column and row key, so a value moved to another row
fails to decrypt. What stays clear is what the SQL must compare or order: row ids, account
ids, device ids, message ids, key ids, timestamps, counters, public keys; the list and the
reasons are in docs/threat-model.md. The store key itself is stored only sealed by the
application's `KeyProvider`; opening with the wrong provider changes nothing. Deleted and
overwritten cells are zeroed (``secure_delete``), and a profile from before encryption
(schema 1) is encrypted in place in one transaction, then vacuumed, at its first open.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final
from uuid import UUID

from kurir.client.atrest import STORE_KEY_BYTES, KeyFile, KeyProvider, StoreCipher
from kurir.client.errors import StoreError
from kurir.crypto.curve import Rng

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "Account",
    "ClientStore",
    "Contact",
    "InboxItem",
    "InboxKind",
    "PreKeyKind",
    "SentItem",
]

DB_FILE: Final = "kurir-client.sqlite3"
MAX_SENT: Final = 500
"""How many recently sent plaintexts are kept for decryption-failure retries."""
MAX_SEEN: Final = 50_000
"""How many received message ids are kept for dedup (the oldest are forgotten first)."""
PRUNE_EVERY: Final = 256
"""The dedup set is trimmed to `MAX_SEEN` once every this many inserts."""

Clock = Callable[[], int]
"""Returns the current time in milliseconds since the epoch."""

_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the first schema.
    """
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        server_url TEXT NOT NULL,
        address TEXT NOT NULL,
        account_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        password TEXT NOT NULL,
        registration_id INTEGER NOT NULL,
        identity_private BLOB NOT NULL,
        identity_public BLOB NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE prekeys (
        key_id INTEGER PRIMARY KEY,
        record BLOB NOT NULL,
        created INTEGER NOT NULL,
        retired INTEGER
    );
    CREATE TABLE signed_prekeys (
        key_id INTEGER PRIMARY KEY,
        record BLOB NOT NULL,
        created INTEGER NOT NULL,
        retired INTEGER
    );
    CREATE TABLE kyber_prekeys (
        key_id INTEGER PRIMARY KEY,
        record BLOB NOT NULL,
        last_resort INTEGER NOT NULL,
        created INTEGER NOT NULL,
        retired INTEGER
    );
    CREATE TABLE kyber_last_resort_uses (
        key_id INTEGER NOT NULL,
        signed_prekey_id INTEGER NOT NULL,
        base_key BLOB NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (key_id, signed_prekey_id, base_key)
    );
    CREATE TABLE sessions (
        name TEXT NOT NULL, device_id INTEGER NOT NULL, record BLOB NOT NULL,
        PRIMARY KEY (name, device_id)
    );
    CREATE TABLE identities (
        name TEXT PRIMARY KEY, identity_key BLOB NOT NULL, first_seen INTEGER NOT NULL
    );
    CREATE TABLE contacts (
        address TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        devices TEXT NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE INDEX contacts_by_account ON contacts (account_id);
    CREATE TABLE seen (
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        source_device INTEGER NOT NULL,
        message_id BLOB NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (kind, source, source_device, message_id)
    );
    CREATE INDEX seen_by_age ON seen (seen_at);
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        source_device INTEGER NOT NULL,
        source_address TEXT,
        message_id BLOB NOT NULL,
        timestamp INTEGER NOT NULL,
        server_timestamp INTEGER NOT NULL,
        content BLOB
    );
    CREATE TABLE sent (
        message_id BLOB PRIMARY KEY,
        recipient TEXT NOT NULL,
        content BLOB NOT NULL,
        sent_at INTEGER NOT NULL
    );
    CREATE INDEX sent_by_age ON sent (sent_at);
    """,
    # 2: encryption at rest. The sealed store key; sealed values go into the existing columns
    # (SQLite keeps a BLOB as is in a TEXT column); contacts are found by a blind index. The
    # contact table is a cache of the directory, so its rows are dropped, not converted.
    """
    CREATE TABLE store_key (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sealed BLOB NOT NULL,
        created INTEGER NOT NULL
    );
    DROP TABLE contacts;
    CREATE TABLE contacts (
        address_index BLOB PRIMARY KEY,
        address BLOB NOT NULL,
        account_id TEXT NOT NULL,
        devices TEXT NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE INDEX contacts_by_account ON contacts (account_id);
    """,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
_ENCRYPTED_SINCE: Final = 2
"""The schema version that seals values; `_seal_legacy_rows` converts older profiles."""
_LEGACY_SEALED: Final[tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = (
    # (table, key columns bound into the associated data, sealed columns)
    ("account", ("id",), ("address", "password", "identity_private")),
    ("prekeys", ("key_id",), ("record",)),
    ("signed_prekeys", ("key_id",), ("record",)),
    ("kyber_prekeys", ("key_id", "last_resort"), ("record",)),
    ("sessions", ("name", "device_id"), ("record",)),
    ("identities", ("name",), ("identity_key",)),
    ("inbox", ("kind", "source", "source_device", "message_id"), ("source_address", "content")),
    ("sent", ("message_id", "recipient", "sent_at"), ("content",)),
    # kurir.client.group_store's table, when the profile has one.
    ("group_sender_keys", ("name", "device_id", "distribution_id"), ("record",)),
)
_NO_ACCOUNT: Final = UUID(int=0)


class PreKeyKind(StrEnum):
    """The four kinds of own prekeys, each published and replaced as a set."""

    ONE_TIME = "one_time"
    SIGNED = "signed"
    PQ_ONE_TIME = "pq_one_time"
    PQ_LAST_RESORT = "pq_last_resort"


_PREKEY_KINDS: Final[dict[PreKeyKind, tuple[str, str]]] = {
    PreKeyKind.ONE_TIME: ("prekeys", ""),
    PreKeyKind.SIGNED: ("signed_prekeys", ""),
    PreKeyKind.PQ_ONE_TIME: ("kyber_prekeys", " AND last_resort = 0"),
    PreKeyKind.PQ_LAST_RESORT: ("kyber_prekeys", " AND last_resort = 1"),
}


@dataclass(frozen=True, slots=True)
class Account:
    """The registered account of this profile.

    Attributes:
        server_url: the server this account lives on.
        address: our normalised address (``app:identifier``).
        account_id: our account id.
        device_id: this device's number.
        password: this device's password (never logged, never shown).
        registration_id: this device's registration id (1..16380).
        identity_private: our identity private key (serialized; it never leaves the store
            except to the session cipher in this process).
        identity_public: our identity public key (serialized, 33 bytes).
    """

    server_url: str
    address: str
    account_id: UUID
    device_id: int
    password: str = field(repr=False)
    registration_id: int
    identity_private: bytes = field(repr=False)
    identity_public: bytes


@dataclass(frozen=True, slots=True)
class Contact:
    """A cached directory entry.

    Attributes:
        address: the normalised address.
        account_id: the account behind it.
        devices: its device ids as last seen.
    """

    address: str
    account_id: UUID
    devices: tuple[int, ...]


class InboxKind:
    """What an inbox row holds (a small closed set of strings stored in the database)."""

    MESSAGE = "message"
    DELIVERY = "delivery"
    UNDECRYPTABLE = "undecryptable"
    RETRY_REQUEST = "retry_request"
    EXPIRED = "expired"
    IDENTITY_CHANGED = "identity_changed"
    CONTROL = "control"
    """Ids of our own control sends (retry requests, resends): their receipts are not shown."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A decrypted message or a receipt, stored and not yet handed to the application.

    Attributes:
        id: the row id (the application sees items in this order).
        kind: `InboxKind.MESSAGE`, `InboxKind.DELIVERY` or `InboxKind.UNDECRYPTABLE`.
        source: the sender's account id (for a delivery receipt: the recipient's).
        source_device: the sending (or acknowledging) device.
        source_address: the sender's address as the server vouched for it, if known.
        message_id: the message's id (for a receipt: the id of our delivered message).
        timestamp: the sender's timestamp (ms).
        server_timestamp: when the server accepted it (ms).
        content: the encoded, padded `Content` for a message; the reason (UTF-8) for an
            undecryptable one; None for a receipt.
    """

    id: int
    kind: str
    source: UUID
    source_device: int
    source_address: str | None
    message_id: bytes
    timestamp: int
    server_timestamp: int
    content: bytes | None


@dataclass(frozen=True, slots=True)
class SentItem:
    """A recently sent plaintext, kept to answer a decryption-failure retry request.

    Attributes:
        message_id: the message's id.
        recipient: the account it was sent to.
        content: the padded, encoded `Content`.
        sent_at: the message's timestamp (ms), unique per sender.
    """

    message_id: bytes
    recipient: UUID
    content: bytes
    sent_at: int


class ClientStore:
    """The profile's SQLite database. Open it with `ClientStore.open`.

    Methods that change several rows must run inside `transaction`; single statements outside
    a transaction commit on their own.

    Args:
        db: an open connection in autocommit mode (``isolation_level=None``).
        now: the clock, in milliseconds.
        cipher: seals and opens the private values (made from the unsealed store key).
    """

    def __init__(self, db: sqlite3.Connection, now: Clock, cipher: StoreCipher) -> None:
        self._db = db
        self._now = now
        self._cipher = cipher
        self._depth = 0
        self._seen_inserts = 0

    @classmethod
    def open(
        cls,
        profile: Path,
        now: Clock,
        key: KeyProvider | None = None,
        *,
        rng: Rng = os.urandom,
    ) -> ClientStore:
        """Opens (creating if needed) the store in the profile directory and migrates it.

        Args:
            profile: the profile directory.
            now: the clock, in milliseconds.
            key: holds the store key: unseals it for an existing store, seals a new one for a
                new store (or a store from before encryption, which is then encrypted). None
                is the development default of `kurir.client.Client.open`: a `KeyFile` beside
                the profile directory (``PROFILE.key``).
            rng: randomness for a new store key.

        Raises:
            WrongKeyError: ``key`` does not open this store; nothing was changed.
            StoreError: the file is not a kurir store, or was written by a newer client.
        """
        try:
            profile.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = profile / DB_FILE
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the profile at {profile}: {exc}") from None
        if key is None:
            key = KeyFile.beside(profile, rng=rng)
        try:
            return cls._setup(db, now, key, rng)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(
                f"the profile at {profile} is not a usable kurir store: {exc}"
            ) from None
        except BaseException:  # e.g. WrongKeyError, or a provider's own failure
            db.close()
            raise

    @classmethod
    def in_memory(cls, now: Clock) -> ClientStore:
        """A throwaway store (for tests), sealed with a key that lives only in this process."""
        db = sqlite3.connect(":memory:", isolation_level=None)
        return cls._setup(db, now, _InProcessKey(), os.urandom)

    def close(self) -> None:
        """Closes the database."""
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The open database, for modules that own tables of their own in this file (e.g.
        `kurir.client.group_store`); use it inside `transaction` like every method here."""
        return self._db

    @classmethod
    def _setup(cls, db: sqlite3.Connection, now: Clock, key: KeyProvider, rng: Rng) -> ClientStore:
        # Nothing is written before the key is known to be right: unsealing reads only.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA secure_delete=ON")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the profile was written by a newer client (schema {version} > {SCHEMA_VERSION})"
            )
        sealed: bytes | None = None
        if version >= _ENCRYPTED_SINCE:
            row = db.execute("SELECT sealed FROM store_key WHERE id = 1").fetchone()
            if row is None:
                raise StoreError("the profile has lost its store key")
            store_key = key.unseal(bytes(row[0]))
        else:
            store_key = rng(STORE_KEY_BYTES)
            sealed = key.seal(store_key)
        store = cls(db, now, StoreCipher(store_key))
        for number in range(version, SCHEMA_VERSION):
            with store.transaction():
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                if number + 1 == _ENCRYPTED_SINCE:
                    db.execute(
                        "INSERT INTO store_key (id, sealed, created) VALUES (1, ?, ?)",
                        (sealed, now()),
                    )
                    if version > 0:
                        store._seal_legacy_rows()
                db.execute(f"PRAGMA user_version = {number + 1}")
        if 0 < version < _ENCRYPTED_SINCE:
            store._scrub()
        return store

    def _seal_legacy_rows(self) -> None:
        # Schema 1 kept every value in the clear: seal each in place (inside the migration's
        # transaction, so a crash leaves the old profile whole).
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        for table, keys, columns in _LEGACY_SEALED:
            if table not in tables:
                continue
            selected = ", ".join((*keys, *columns))
            rows = self._db.execute(f"SELECT rowid, {selected} FROM {table}").fetchall()  # noqa: S608
            for row in rows:
                key_values = row[1 : 1 + len(keys)]
                sealed = [
                    None
                    if value is None
                    else self._cipher.seal(_as_bytes(value), table, column, *key_values)
                    for column, value in zip(columns, row[1 + len(keys) :], strict=True)
                ]
                assignments = ", ".join(f"{c} = ?" for c in columns)
                self._db.execute(
                    f"UPDATE {table} SET {assignments} WHERE rowid = ?",  # noqa: S608
                    (*sealed, row[0]),
                )

    def _scrub(self) -> None:
        # After sealing a schema-1 profile, no page of the file or its WAL may still hold the
        # old clear values: move every page into the database, rewrite it, empty the WAL.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def cipher(self) -> StoreCipher:
        """Seals the values of modules that own tables in this file (`group_store`)."""
        return self._cipher

    def change_key(self, old: KeyProvider, new: KeyProvider) -> None:
        """Seals the store key with another provider (a new passphrase, a new key file).

        The values stay as they are: only the sealed store key is replaced.

        Raises:
            WrongKeyError: ``old`` does not open this store (nothing is changed).
        """
        (sealed,) = self._db.execute("SELECT sealed FROM store_key WHERE id = 1").fetchone()
        resealed = new.seal(old.unseal(bytes(sealed)))
        self._db.execute("UPDATE store_key SET sealed = ? WHERE id = 1", (resealed,))
        self._scrub()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Runs the block in one transaction (nested blocks join the outer one).

        On an exception everything the block wrote is rolled back and the exception propagates.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # --- account -----------------------------------------------------------------------------

    def account(self) -> Account | None:
        """Returns the registered account, or None before registration."""
        row = self._db.execute(
            "SELECT server_url, address, account_id, device_id, password, registration_id,"
            " identity_private, identity_public FROM account WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        address, password, private = (
            self._open(row[i], "account", column, 1)
            for i, column in ((1, "address"), (4, "password"), (6, "identity_private"))
        )
        return Account(
            row[0],
            address.decode(),
            UUID(row[2]),
            row[3],
            password.decode(),
            row[5],
            private,
            bytes(row[7]),
        )

    def save_account(self, account: Account) -> None:
        """Stores the account (replacing a previous one, as re-registration does)."""
        self._db.execute(
            "INSERT OR REPLACE INTO account (id, server_url, address, account_id, device_id,"
            " password, registration_id, identity_private, identity_public, created)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account.server_url,
                self._cipher.seal(account.address.encode(), "account", "address", 1),
                str(account.account_id),
                account.device_id,
                self._cipher.seal(account.password.encode(), "account", "password", 1),
                account.registration_id,
                self._cipher.seal(account.identity_private, "account", "identity_private", 1),
                account.identity_public,
                self._now(),
            ),
        )

    def next_id(self, counter: str, count: int = 1) -> int:
        """Reserves ``count`` consecutive ids of a named counter and returns the first.

        Ids start at 1 and wrap before 2**24 (libsignal's prekey ids are 24-bit in practice).
        """
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()
        first = row[0] if row is not None else 1
        if first + count >= 1 << 24:
            first = 1
        self._db.execute(
            "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (counter, first + count)
        )
        return first

    def flag(self, name: str) -> bool:
        """Tells whether a named flag was set (flags share the counters table)."""
        row = self._db.execute(
            "SELECT value FROM counters WHERE name = ?", ("flag:" + name,)
        ).fetchone()
        return row is not None and bool(row[0])

    def set_flag(self, name: str) -> None:
        """Sets a named flag for good."""
        self._db.execute(
            "INSERT OR REPLACE INTO counters (name, value) VALUES (?, 1)", ("flag:" + name,)
        )

    # --- own prekeys (serialized records) ----------------------------------------------------

    def prekey(self, key_id: int) -> bytes | None:
        """Returns a one-time EC prekey record."""
        return self._sealed_record("prekeys", key_id)

    def put_prekey(self, key_id: int, record: bytes) -> None:
        """Stores a one-time EC prekey record."""
        self._db.execute(
            "INSERT OR REPLACE INTO prekeys (key_id, record, created) VALUES (?, ?, ?)",
            (key_id, self._cipher.seal(record, "prekeys", "record", key_id), self._now()),
        )

    def remove_prekey(self, key_id: int) -> None:
        """Deletes a used one-time EC prekey."""
        self._db.execute("DELETE FROM prekeys WHERE key_id = ?", (key_id,))

    def signed_prekey(self, key_id: int) -> bytes | None:
        """Returns a signed prekey record."""
        return self._sealed_record("signed_prekeys", key_id)

    def put_signed_prekey(self, key_id: int, record: bytes) -> None:
        """Stores a signed prekey record."""
        self._db.execute(
            "INSERT OR REPLACE INTO signed_prekeys (key_id, record, created) VALUES (?, ?, ?)",
            (key_id, self._cipher.seal(record, "signed_prekeys", "record", key_id), self._now()),
        )

    def kyber_prekey(self, key_id: int) -> bytes | None:
        """Returns a KEM prekey record (one-time or last-resort)."""
        row = self._db.execute(
            "SELECT record, last_resort FROM kyber_prekeys WHERE key_id = ?", (key_id,)
        ).fetchone()
        if row is None:
            return None
        return self._open(row[0], "kyber_prekeys", "record", key_id, row[1])

    def put_kyber_prekey(self, key_id: int, record: bytes, *, last_resort: bool) -> None:
        """Stores a KEM prekey record."""
        self._db.execute(
            "INSERT OR REPLACE INTO kyber_prekeys (key_id, record, last_resort, created)"
            " VALUES (?, ?, ?, ?)",
            (
                key_id,
                self._cipher.seal(record, "kyber_prekeys", "record", key_id, int(last_resort)),
                int(last_resort),
                self._now(),
            ),
        )

    def use_kyber_prekey(self, key_id: int) -> None:
        """Marks a KEM prekey used: a one-time key is deleted, a last-resort key is kept."""
        self._db.execute(
            "DELETE FROM kyber_prekeys WHERE key_id = ? AND last_resort = 0", (key_id,)
        )

    def retire(self, kind: PreKeyKind) -> None:
        """Marks every current prekey of a kind as replaced on the server (from now).

        A retired key can still be named by a message that was already on its way, so it is
        kept until `prune_retired` removes it.
        """
        table, extra = _PREKEY_KINDS[kind]
        self._db.execute(
            f"UPDATE {table} SET retired = ? WHERE retired IS NULL{extra}",  # noqa: S608
            (self._now(),),
        )

    def newest_created(self, kind: PreKeyKind) -> int | None:
        """Returns when the newest current key of a kind was made (ms), or None."""
        table, extra = _PREKEY_KINDS[kind]
        (created,) = self._db.execute(
            f"SELECT max(created) FROM {table} WHERE retired IS NULL{extra}"  # noqa: S608
        ).fetchone()
        return None if created is None else int(created)

    def prune_retired(self, retired_before: int) -> int:
        """Deletes prekeys retired before the given time; returns how many were deleted."""
        deleted = 0
        for table in ("prekeys", "signed_prekeys", "kyber_prekeys"):
            cursor = self._db.execute(
                f"DELETE FROM {table} WHERE retired IS NOT NULL AND retired < ?",  # noqa: S608
                (retired_before,),
            )
            deleted += cursor.rowcount
        self._db.execute(
            "DELETE FROM kyber_last_resort_uses WHERE key_id NOT IN"
            " (SELECT key_id FROM kyber_prekeys)"
        )
        return deleted

    def record_last_resort_use(self, key_id: int, signed_prekey_id: int, base_key: bytes) -> bool:
        """Remembers a use of a last-resort KEM prekey; returns False if this exact use was seen.

        A repeated (key, signed prekey, base key) triple is a replayed session start.
        """
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO kyber_last_resort_uses"
            " (key_id, signed_prekey_id, base_key, used) VALUES (?, ?, ?, ?)",
            (key_id, signed_prekey_id, base_key, self._now()),
        )
        return cursor.rowcount == 1

    def is_last_resort(self, key_id: int) -> bool:
        """Tells whether a stored KEM prekey is the last-resort key."""
        row = self._db.execute(
            "SELECT last_resort FROM kyber_prekeys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return row is not None and bool(row[0])

    def prekey_counts(self) -> tuple[int, int]:
        """Returns how many current (not retired) one-time EC and KEM prekeys are held."""
        (ec,) = self._db.execute("SELECT count(*) FROM prekeys WHERE retired IS NULL").fetchone()
        (pq,) = self._db.execute(
            "SELECT count(*) FROM kyber_prekeys WHERE last_resort = 0 AND retired IS NULL"
        ).fetchone()
        return int(ec), int(pq)

    # --- sessions and identities -------------------------------------------------------------

    def session(self, name: str, device_id: int) -> bytes | None:
        """Returns the session record with one device of a peer."""
        row = self._db.execute(
            "SELECT record FROM sessions WHERE name = ? AND device_id = ?", (name, device_id)
        ).fetchone()
        return None if row is None else self._open(row[0], "sessions", "record", name, device_id)

    def put_session(self, name: str, device_id: int, record: bytes) -> None:
        """Stores the session record with one device of a peer."""
        sealed = self._cipher.seal(record, "sessions", "record", name, device_id)
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (name, device_id, record) VALUES (?, ?, ?)",
            (name, device_id, sealed),
        )

    def session_devices(self, name: str) -> list[int]:
        """Returns the device ids of a peer with which a session is stored."""
        rows = self._db.execute(
            "SELECT device_id FROM sessions WHERE name = ? ORDER BY device_id", (name,)
        )
        return [int(r[0]) for r in rows]

    def delete_session(self, name: str, device_id: int) -> None:
        """Forgets the session with one device of a peer (e.g. a stale or removed device)."""
        self._db.execute("DELETE FROM sessions WHERE name = ? AND device_id = ?", (name, device_id))

    def identity(self, name: str) -> bytes | None:
        """Returns the identity key trusted for a peer (serialized), or None."""
        row = self._db.execute(
            "SELECT identity_key FROM identities WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else self._open(row[0], "identities", "identity_key", name)

    def put_identity(self, name: str, identity_key: bytes) -> bool:
        """Trusts ``identity_key`` for a peer; returns True when it replaced a different key."""
        old = self.identity(name)
        if old == identity_key:
            return False
        self._db.execute(
            "INSERT OR REPLACE INTO identities (name, identity_key, first_seen) VALUES (?, ?, ?)",
            (
                name,
                self._cipher.seal(identity_key, "identities", "identity_key", name),
                self._now(),
            ),
        )
        return old is not None

    # --- contacts ----------------------------------------------------------------------------

    def contact(self, address: str) -> Contact | None:
        """Returns the cached directory entry of an address."""
        row = self._db.execute(
            "SELECT address_index, address, account_id, devices FROM contacts"
            " WHERE address_index = ?",
            (self._cipher.index(address),),
        ).fetchone()
        return None if row is None else self._contact(row)

    def contact_by_account(self, account_id: UUID) -> Contact | None:
        """Returns the cached directory entry of an account."""
        row = self._db.execute(
            "SELECT address_index, address, account_id, devices FROM contacts"
            " WHERE account_id = ? ORDER BY updated DESC LIMIT 1",
            (str(account_id),),
        ).fetchone()
        return None if row is None else self._contact(row)

    def put_contact(self, contact: Contact) -> None:
        """Caches a directory entry (the address sealed, found by its blind index)."""
        index = self._cipher.index(contact.address)
        self._db.execute(
            "INSERT OR REPLACE INTO contacts (address_index, address, account_id, devices,"
            " updated) VALUES (?, ?, ?, ?, ?)",
            (
                index,
                self._cipher.seal(contact.address.encode(), "contacts", "address", index),
                str(contact.account_id),
                ",".join(str(d) for d in sorted(contact.devices)),
                self._now(),
            ),
        )

    # --- received: dedup and inbox -----------------------------------------------------------

    def seen(self, kind: str, source: UUID, source_device: int, message_id: bytes) -> bool:
        """Tells whether this message (or receipt) was already stored once."""
        row = self._db.execute(
            "SELECT 1 FROM seen WHERE kind = ? AND source = ? AND source_device = ?"
            " AND message_id = ?",
            (kind, str(source), source_device, message_id),
        ).fetchone()
        return row is not None

    def mark_seen(self, kind: str, source: UUID, source_device: int, message_id: bytes) -> bool:
        """Records an item that goes to no inbox (e.g. a retry request), once.

        Returns:
            False when it was recorded before (a duplicate).
        """
        with self.transaction():
            if self.seen(kind, source, source_device, message_id):
                return False
            self._db.execute(
                "INSERT INTO seen (kind, source, source_device, message_id, seen_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, str(source), source_device, message_id, self._now()),
            )
            self._prune_seen()
        return True

    def mark_control(self, message_id: bytes) -> None:
        """Records the id of one of our own control sends (bounded like the dedup set)."""
        self.mark_seen(InboxKind.CONTROL, _NO_ACCOUNT, 0, message_id)

    def is_control(self, message_id: bytes) -> bool:
        """Tells whether a message id is one of our own control sends."""
        return self.seen(InboxKind.CONTROL, _NO_ACCOUNT, 0, message_id)

    def add_to_inbox(
        self,
        *,
        kind: str,
        source: UUID,
        source_device: int,
        source_address: str | None,
        message_id: bytes,
        timestamp: int,
        server_timestamp: int,
        content: bytes | None,
    ) -> bool:
        """Stores a received item for the application, once: returns False for a duplicate.

        Call inside the transaction that also stores the session state of the decryption.
        """
        with self.transaction():
            if self.seen(kind, source, source_device, message_id):
                return False
            now = self._now()
            self._db.execute(
                "INSERT INTO seen (kind, source, source_device, message_id, seen_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, str(source), source_device, message_id, now),
            )
            where = (kind, str(source), source_device, message_id)
            sealed_address = None
            if source_address is not None:
                sealed_address = self._cipher.seal(
                    source_address.encode(), "inbox", "source_address", *where
                )
            sealed_content = None
            if content is not None:
                sealed_content = self._cipher.seal(content, "inbox", "content", *where)
            self._db.execute(
                "INSERT INTO inbox (kind, source, source_device, source_address, message_id,"
                " timestamp, server_timestamp, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    str(source),
                    source_device,
                    sealed_address,
                    message_id,
                    timestamp,
                    server_timestamp,
                    sealed_content,
                ),
            )
            self._prune_seen()
        return True

    def _prune_seen(self) -> None:
        # Every PRUNE_EVERY inserts, forget the oldest ids beyond MAX_SEEN.
        self._seen_inserts += 1
        if self._seen_inserts % PRUNE_EVERY:
            return
        self._db.execute(
            "DELETE FROM seen WHERE rowid IN (SELECT rowid FROM seen ORDER BY seen_at DESC"
            " LIMIT -1 OFFSET ?)",
            (MAX_SEEN,),
        )

    def inbox(self, after: int = 0, limit: int = 100) -> list[InboxItem]:
        """Returns inbox items with a row id greater than ``after``, oldest first."""
        rows = self._db.execute(
            "SELECT id, kind, source, source_device, source_address, message_id, timestamp,"
            " server_timestamp, content FROM inbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        items = []
        for r in rows:
            where = (r[1], r[2], r[3], bytes(r[5]))
            address = None if r[4] is None else self._open(r[4], "inbox", "source_address", *where)
            content = None if r[8] is None else self._open(r[8], "inbox", "content", *where)
            items.append(
                InboxItem(
                    id=r[0],
                    kind=r[1],
                    source=UUID(r[2]),
                    source_device=r[3],
                    source_address=None if address is None else address.decode(),
                    message_id=bytes(r[5]),
                    timestamp=r[6],
                    server_timestamp=r[7],
                    content=content,
                )
            )
        return items

    def remove_from_inbox(self, item_id: int) -> None:
        """Deletes an inbox item once the application has handled it."""
        self._db.execute("DELETE FROM inbox WHERE id = ?", (item_id,))

    # --- sent --------------------------------------------------------------------------------

    def put_sent(
        self, message_id: bytes, recipient: UUID, content: bytes, *, timestamp: int
    ) -> None:
        """Keeps a sent plaintext with the message's timestamp; only the newest `MAX_SENT`."""
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO sent (message_id, recipient, content, sent_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    message_id,
                    str(recipient),
                    self._cipher.seal(
                        content, "sent", "content", message_id, str(recipient), timestamp
                    ),
                    timestamp,
                ),
            )
            self._db.execute(
                "DELETE FROM sent WHERE rowid IN (SELECT rowid FROM sent ORDER BY sent_at DESC,"
                " rowid DESC LIMIT -1 OFFSET ?)",
                (MAX_SENT,),
            )

    def sent(self, message_id: bytes) -> SentItem | None:
        """Returns a recently sent plaintext, or None once it has been forgotten."""
        row = self._db.execute(
            "SELECT message_id, recipient, content, sent_at FROM sent WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else self._sent_item(row)

    def sent_to(self, recipient: UUID, timestamp: int) -> SentItem | None:
        """Returns the recently sent message to ``recipient`` with that timestamp, if kept."""
        row = self._db.execute(
            "SELECT message_id, recipient, content, sent_at FROM sent"
            " WHERE recipient = ? AND sent_at = ? ORDER BY rowid DESC LIMIT 1",
            (str(recipient), timestamp),
        ).fetchone()
        return None if row is None else self._sent_item(row)

    # --- sealing -----------------------------------------------------------------------------

    def _open(self, value: bytes | str, table: str, column: str, *key: str | int | bytes) -> bytes:
        return self._cipher.open(_as_bytes(value), table, column, *key)

    def _sealed_record(self, table: str, key_id: int) -> bytes | None:
        row = self._db.execute(
            f"SELECT record FROM {table} WHERE key_id = ?",  # noqa: S608
            (key_id,),
        ).fetchone()
        return None if row is None else self._open(row[0], table, "record", key_id)

    def _sent_item(self, row: tuple[bytes, str, bytes, int]) -> SentItem:
        message_id = bytes(row[0])
        content = self._open(row[2], "sent", "content", message_id, row[1], row[3])
        return SentItem(message_id, UUID(row[1]), content, row[3])

    def _contact(self, row: tuple[bytes, bytes, str, str]) -> Contact:
        address = self._open(row[1], "contacts", "address", bytes(row[0])).decode()
        devices = tuple(int(d) for d in row[3].split(",") if d)
        return Contact(address, UUID(row[2]), devices)


def _as_bytes(value: bytes | str | int) -> bytes:
    # A schema-1 row holds TEXT where schema 2 holds a sealed BLOB.
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class _InProcessKey:
    """The `KeyProvider` of an in-memory store: the store key lives only in this process."""

    def __init__(self) -> None:
        self._key = b""

    def seal(self, store_key: bytes) -> bytes:
        self._key = store_key
        return b"in-process"

    def unseal(self, sealed: bytes) -> bytes:
        return self._key
