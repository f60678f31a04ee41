"""The client's group state: sender keys, who holds ours, and the receive side of groups.

Owns: three tables of its own in the profile's SQLite file (created here, version 1): sender
key records (`SqliteSenderKeyStore`, the `kurir.crypto.sender_keys.SenderKeyStore` over
SQLite), the set of member devices that hold our current sender key per group, and the groups
whose sender key must be rotated before our next message (a member was removed or left). And
`GroupReceiver`, which `kurir.client.incoming` calls inside its transactions: it absorbs a
`SenderKeyDistribution` that arrived in a 1:1 session, and decrypts a group message
(envelope type 7) into the inbox in the same transaction as the sender key update, so a group
message reaches the application exactly once. It knows no networking.

At rest: a sender key record is sealed with the store key (`ClientStore.cipher`), bound to its
(sender, device, distribution id); group ids, member account ids and device ids stay clear
because the SQL looks them up (the server knows group membership anyway, docs/metadata.md).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from typing import Final
from uuid import UUID

from kurir.client.content import (
    GroupAction,
    GroupChange,
    GroupMessage,
    SenderKeyDistribution,
    SenderKeyRequest,
    decode_content,
)
from kurir.client.errors import PeerContentError
from kurir.client.store import ClientStore, InboxKind
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.errors import (
    DuplicateMessageError,
    NoSenderKeyStateError,
    SignalProtocolError,
)
from kurir.crypto.sender_key_record import SenderKeyRecord
from kurir.crypto.sender_keys import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    group_decrypt,
    process_sender_key_distribution_message,
)
from kurir.wire.frames import Envelope

__all__ = ["GroupKeys", "GroupReceiver", "OnMissingKey", "SqliteSenderKeyStore"]

OnMissingKey = Callable[[UUID, int, UUID], None]
"""Called with (sender account, sender device, group id) for a message without its key."""

_log = logging.getLogger(__name__)

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS group_sender_keys (
        name TEXT NOT NULL, device_id INTEGER NOT NULL, distribution_id TEXT NOT NULL,
        record BLOB NOT NULL, PRIMARY KEY (name, device_id, distribution_id))""",
    """CREATE TABLE IF NOT EXISTS group_key_holders (
        group_id TEXT NOT NULL, account_id TEXT NOT NULL, device_id INTEGER NOT NULL,
        PRIMARY KEY (group_id, account_id, device_id))""",
    """CREATE TABLE IF NOT EXISTS group_rotations (group_id TEXT PRIMARY KEY)""",
)


def _setup(store: ClientStore) -> sqlite3.Connection:
    db = store.connection
    with store.transaction():
        for statement in _SCHEMA:
            db.execute(statement)
    return db


class SqliteSenderKeyStore:
    """`SenderKeyStore` over the profile's database; the caller holds the transaction."""

    def __init__(self, store: ClientStore) -> None:
        self._db = _setup(store)
        self._cipher = store.cipher

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Saves the record, replacing any previous one."""
        where = (sender.name, sender.device_id, str(distribution_id))
        sealed = self._cipher.seal(record.serialize(), "group_sender_keys", "record", *where)
        self._db.execute(
            "INSERT OR REPLACE INTO group_sender_keys (name, device_id, distribution_id, record)"
            " VALUES (?, ?, ?, ?)",
            (*where, sealed),
        )

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """Returns the record, or None."""
        where = (sender.name, sender.device_id, str(distribution_id))
        row = self._db.execute(
            "SELECT record FROM group_sender_keys WHERE name = ? AND device_id = ?"
            " AND distribution_id = ?",
            where,
        ).fetchone()
        if row is None:
            return None
        record = self._cipher.open(bytes(row[0]), "group_sender_keys", "record", *where)
        return SenderKeyRecord.deserialize(record)


class GroupKeys:
    """Which member devices hold our current sender key, and which groups need a new one."""

    def __init__(self, store: ClientStore) -> None:
        self._store = store
        self._db = _setup(store)

    def holders(self, group_id: UUID) -> set[tuple[UUID, int]]:
        """The (account, device) pairs that were given our current sender key."""
        rows = self._db.execute(
            "SELECT account_id, device_id FROM group_key_holders WHERE group_id = ?",
            (str(group_id),),
        )
        return {(UUID(r[0]), int(r[1])) for r in rows}

    def add_holders(self, group_id: UUID, holders: set[tuple[UUID, int]]) -> None:
        """Records that these devices were given our current sender key."""
        with self._store.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO group_key_holders (group_id, account_id, device_id)"
                " VALUES (?, ?, ?)",
                [(str(group_id), str(a), d) for a, d in holders],
            )

    def forget_holder(self, group_id: UUID, account_id: UUID, device_id: int) -> None:
        """The device lacks our key after all: it gets it again before our next message."""
        self._db.execute(
            "DELETE FROM group_key_holders WHERE group_id = ? AND account_id = ? AND device_id = ?",
            (str(group_id), str(account_id), device_id),
        )

    def start_new_key(self, group_id: UUID) -> None:
        """Forgets every holder and the pending rotation (call in the rotating transaction)."""
        self._db.execute("DELETE FROM group_key_holders WHERE group_id = ?", (str(group_id),))
        self._db.execute("DELETE FROM group_rotations WHERE group_id = ?", (str(group_id),))

    def request_rotation(self, group_id: UUID) -> None:
        """Our sender key must be replaced before our next message to the group."""
        self._db.execute(
            "INSERT OR IGNORE INTO group_rotations (group_id) VALUES (?)", (str(group_id),)
        )

    def rotation_requested(self, group_id: UUID) -> bool:
        """Whether `request_rotation` was called since the last new key."""
        row = self._db.execute(
            "SELECT 1 FROM group_rotations WHERE group_id = ?", (str(group_id),)
        ).fetchone()
        return row is not None


class GroupReceiver:
    """The receive side of groups, called by `kurir.client.incoming.Incoming`.

    Args:
        store: the profile's store.
        on_missing_key: called with (sender account, sender device, group id) when a group
            message arrived before the sender's key (the client then asks for the key).
    """

    def __init__(self, store: ClientStore, on_missing_key: OnMissingKey | None = None) -> None:
        self._on_missing_key = on_missing_key
        self._store = store
        self._keys = SqliteSenderKeyStore(store)
        self._groups = GroupKeys(store)

    def absorb(self, plaintext: bytes, source: UUID, device: int) -> bool:
        """Takes a sender key that arrived inside a 1:1 session (call in its transaction).

        Returns:
            True when ``plaintext`` was a `SenderKeyDistribution` (not for the application).
        """
        try:
            content = decode_content(plaintext)
        except PeerContentError:
            return False
        if isinstance(content.body, SenderKeyRequest):
            try:
                group_id = UUID(content.body.group_id)
            except ValueError:
                return True
            with self._store.transaction():
                self._groups.forget_holder(group_id, source, device)
            return True
        if not isinstance(content.body, SenderKeyDistribution):
            return False
        try:
            message = SenderKeyDistributionMessage.deserialize(content.body.distribution)
        except SignalProtocolError as exc:
            _log.warning("dropping a malformed sender key: %s", type(exc).__name__)
            return True
        if str(message.distribution_id) != content.body.group_id:
            _log.warning("dropping a sender key for another group than announced")
            return True
        sender = ProtocolAddress(str(source), DeviceId(device))
        process_sender_key_distribution_message(sender, message, self._keys)
        return True

    def store_group_message(self, envelope: Envelope, source: UUID, device: int) -> bool:
        """Decrypts a group message (type 7) into the inbox, once.

        Returns:
            True when something new was stored for the application.
        """
        if self._store.seen(InboxKind.MESSAGE, source, device, envelope.message_id):
            return False
        sender = ProtocolAddress(str(source), DeviceId(device))
        try:
            with self._store.transaction():
                distribution_id = SenderKeyMessage.deserialize(envelope.body).distribution_id
                plaintext = group_decrypt(envelope.body, self._keys, sender)
                reason = self._check(plaintext, distribution_id)
                if reason is not None:
                    raise PeerContentError(reason)
                return self._add(InboxKind.MESSAGE, envelope, source, device, plaintext)
        except DuplicateMessageError:
            return False
        except sqlite3.Error:
            raise  # our storage failed: no ack, the server redelivers it
        except NoSenderKeyStateError:
            _log.warning("a group message arrived before its sender key")
            missing = b"cannot decrypt: the sender's key has not arrived"
            stored = self._add(InboxKind.UNDECRYPTABLE, envelope, source, device, missing)
            if stored and self._on_missing_key is not None:
                group_id = SenderKeyMessage.deserialize(envelope.body).distribution_id
                self._on_missing_key(source, device, group_id)
            return stored
        except Exception as exc:
            _log.warning("cannot decrypt a group message: %s", type(exc).__name__)
            reason_bytes = f"cannot decrypt: {type(exc).__name__}".encode()
            return self._add(InboxKind.UNDECRYPTABLE, envelope, source, device, reason_bytes)

    def _check(self, plaintext: bytes, distribution_id: UUID) -> str | None:
        content = decode_content(plaintext)
        match content.body:
            case GroupMessage(group_id=group_id) | GroupChange(group_id=group_id):
                if group_id != str(distribution_id):
                    return "a group message names another group than its sender key"
            case _:
                return "a sender key message that is not a group message"
        if isinstance(content.body, GroupChange) and content.body.action in (
            GroupAction.REMOVED,
            GroupAction.LEFT,
        ):
            self._groups.request_rotation(distribution_id)
        return None

    def _add(
        self, kind: str, envelope: Envelope, source: UUID, device: int, content: bytes
    ) -> bool:
        return self._store.add_to_inbox(
            kind=kind,
            source=source,
            source_device=device,
            source_address=envelope.source_address,
            message_id=envelope.message_id,
            timestamp=envelope.timestamp,
            server_timestamp=envelope.server_timestamp,
            content=content,
        )
