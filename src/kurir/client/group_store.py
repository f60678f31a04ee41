"""The client's group state: sender keys, who holds ours, and the receive side of groups.

Owns: tables of its own in the profile's SQLite file, with their own numbered, forward-only
migrations (`GROUP_SCHEMA_VERSION`, kept in ``group_schema``): sender key records
(`SqliteSenderKeyStore`, the `kurir.crypto.sender_keys.SenderKeyStore` over SQLite), the
member devices that hold our current sender key per group, each with the registration id it
had when it got the key (a re-registered or re-linked device keeps its device id but gets a
new registration id and new sessions: it holds nothing), the groups whose sender key must be
rotated before our next message (a member was removed or left), and the group messages we
asked a sender to resend. And `GroupReceiver`, which `kurir.client.incoming` calls inside its
transactions: it absorbs a `SenderKeyDistribution` that arrived in a 1:1 session, decrypts a
group message (envelope type 7) into the inbox in the same transaction as the sender key
update, so a group message reaches the application exactly once, and asks the sender to
resend one that does not decrypt (Signal's retry request for a SenderKey message,
`kurir.client.retry`). It knows no networking.

At rest: a sender key record is sealed with the store key (`ClientStore.cipher`), bound to its
(sender, device, distribution id); group ids, member account ids, device ids, registration ids
and message ids stay clear because the SQL looks them up (the server knows group membership
and registration ids anyway, docs/metadata.md; docs/threat-model.md §Client device).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
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
from kurir.client.errors import PeerContentError, StoreError
from kurir.client.retry import OnUndecryptable, retry_request_for
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
from kurir.wire.frames import Envelope, EnvelopeType

__all__ = [
    "GROUP_SCHEMA_VERSION",
    "MAX_PENDING_RESENDS",
    "UNKNOWN_REGISTRATION",
    "GroupKeys",
    "GroupReceiver",
    "Holder",
    "SqliteSenderKeyStore",
]

_log = logging.getLogger(__name__)

UNKNOWN_REGISTRATION: Final = 0
"""The registration id of a holder recorded before registration ids were kept (group schema 1).
Registration ids are 1..16380, so it matches no device: each such device gets our key again
before our next message (at its current position, so it loses nothing)."""
MAX_PENDING_RESENDS: Final = 1_000
"""How many asked-for group resends are remembered (the oldest are forgotten first)."""

Holder = tuple[UUID, int, int]
"""(account, device, registration id) of a member device that was given our sender key."""

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: the first tables. Profiles from before the version row have them already.
    (
        """CREATE TABLE IF NOT EXISTS group_sender_keys (
            name TEXT NOT NULL, device_id INTEGER NOT NULL, distribution_id TEXT NOT NULL,
            record BLOB NOT NULL, PRIMARY KEY (name, device_id, distribution_id))""",
        """CREATE TABLE IF NOT EXISTS group_key_holders (
            group_id TEXT NOT NULL, account_id TEXT NOT NULL, device_id INTEGER NOT NULL,
            PRIMARY KEY (group_id, account_id, device_id))""",
        """CREATE TABLE IF NOT EXISTS group_rotations (group_id TEXT PRIMARY KEY)""",
    ),
    # 2: holders carry the registration id they had (0 for the rows of schema 1: unknown);
    # the group messages whose resend we asked for.
    (
        """CREATE TABLE group_key_holders_2 (
            group_id TEXT NOT NULL, account_id TEXT NOT NULL, device_id INTEGER NOT NULL,
            registration_id INTEGER NOT NULL, PRIMARY KEY (group_id, account_id, device_id))""",
        # 0 is UNKNOWN_REGISTRATION
        """INSERT INTO group_key_holders_2 (group_id, account_id, device_id, registration_id)
            SELECT group_id, account_id, device_id, 0 FROM group_key_holders""",
        "DROP TABLE group_key_holders",
        "ALTER TABLE group_key_holders_2 RENAME TO group_key_holders",
        """CREATE TABLE group_resends (
            id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
            device_id INTEGER NOT NULL, message_id BLOB NOT NULL, group_id TEXT NOT NULL,
            UNIQUE (source, device_id, message_id))""",
    ),
)
GROUP_SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _setup(store: ClientStore) -> sqlite3.Connection:
    """Creates or migrates this module's tables (each migration in one transaction)."""
    db = store.connection
    with store.transaction():
        db.execute(
            "CREATE TABLE IF NOT EXISTS group_schema"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        row = db.execute("SELECT version FROM group_schema WHERE id = 1").fetchone()
        version = 0 if row is None else int(row[0])
        if version > GROUP_SCHEMA_VERSION:
            raise StoreError(
                "the profile's group tables were written by a newer client"
                f" (group schema {version} > {GROUP_SCHEMA_VERSION})"
            )
        for number in range(version, GROUP_SCHEMA_VERSION):
            for statement in _MIGRATIONS[number]:
                db.execute(statement)
        if version < GROUP_SCHEMA_VERSION:
            db.execute(
                "INSERT OR REPLACE INTO group_schema (id, version) VALUES (1, ?)",
                (GROUP_SCHEMA_VERSION,),
            )
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

    def distribution_ids(self, sender: ProtocolAddress) -> list[UUID]:
        """The groups (distribution ids) for which ``sender`` has a sender key here."""
        rows = self._db.execute(
            "SELECT distribution_id FROM group_sender_keys WHERE name = ? AND device_id = ?",
            (sender.name, sender.device_id),
        )
        return [UUID(r[0]) for r in rows]


class GroupKeys:
    """Which member devices hold our current sender key (and under which registration id),
    which groups need a new one, and which group messages we asked to be resent."""

    def __init__(self, store: ClientStore) -> None:
        self._store = store
        self._db = _setup(store)

    def holders(self, group_id: UUID) -> set[Holder]:
        """The member devices that were given our current sender key, with the registration
        id each had then (`UNKNOWN_REGISTRATION` for those given it before group schema 2)."""
        rows = self._db.execute(
            "SELECT account_id, device_id, registration_id FROM group_key_holders"
            " WHERE group_id = ?",
            (str(group_id),),
        )
        return {(UUID(r[0]), int(r[1]), int(r[2])) for r in rows}

    def add_holders(self, group_id: UUID, holders: set[Holder]) -> None:
        """Records that these devices, under these registration ids, were given our current
        sender key (replacing what was recorded for the same device id)."""
        with self._store.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO group_key_holders"
                " (group_id, account_id, device_id, registration_id) VALUES (?, ?, ?, ?)",
                [(str(group_id), str(a), d, r) for a, d, r in holders],
            )

    def forget_holder(self, group_id: UUID, account_id: UUID, device_id: int) -> None:
        """The device lacks our key after all: it gets it again before our next message."""
        self._db.execute(
            "DELETE FROM group_key_holders WHERE group_id = ? AND account_id = ? AND device_id = ?",
            (str(group_id), str(account_id), device_id),
        )

    def expect_resend(self, source: UUID, device: int, message_id: bytes, group_id: UUID) -> None:
        """Remembers that we asked ``source``'s ``device`` to resend a group message of
        ``group_id`` that we could not decrypt (only the newest `MAX_PENDING_RESENDS`)."""
        with self._store.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO group_resends (source, device_id, message_id, group_id)"
                " VALUES (?, ?, ?, ?)",
                (str(source), device, message_id, str(group_id)),
            )
            self._db.execute(
                "DELETE FROM group_resends WHERE id IN (SELECT id FROM group_resends"
                " ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (MAX_PENDING_RESENDS,),
            )

    def take_resend(self, source: UUID, device: int, message_id: bytes, group_id: UUID) -> bool:
        """Whether we asked ``source``'s ``device`` for this group message of ``group_id``;
        True once (the pending request is then forgotten)."""
        gone = self._db.execute(
            "DELETE FROM group_resends WHERE source = ? AND device_id = ? AND message_id = ?"
            " AND group_id = ?",
            (str(source), device, message_id, str(group_id)),
        )
        return gone.rowcount > 0

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
        on_undecryptable: called with (sender account, sender device, retry request) when a
            group message does not decrypt (e.g. it arrived before the sender's key: we were
            added while the sender was sending); the client sends the request, and the sender
            answers with its key and the message, 1:1 (`kurir.client.groups.Groups.resend`).
    """

    def __init__(self, store: ClientStore, on_undecryptable: OnUndecryptable | None = None) -> None:
        self._on_undecryptable = on_undecryptable
        self._store = store
        self._keys = SqliteSenderKeyStore(store)
        self._groups = GroupKeys(store)

    def absorb(self, plaintext: bytes, source: UUID, device: int) -> bool:
        """Takes a sender key that arrived inside a 1:1 session (call in its transaction).

        Also takes the ``sender_key_request`` of older clients (we give that device our key
        again before our next message); this client asks with a retry request instead.

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

    def admits_direct(self, plaintext: bytes, source: UUID, device: int) -> bool:
        """Whether group content that arrived inside a 1:1 session may reach the application
        (call in its transaction; any other content is admitted).

        A group message is admitted over a 1:1 session only as the resend of a group message
        from the same sender device that did not decrypt here and that we asked for: the
        server vouched for the sender's membership when it fanned the original out, and a
        1:1 message carries no such proof. A resent `GroupChange` that removes a member makes
        us rotate our key, as if it had arrived in the group. Group changes that are no
        resend (a removal told to the removed member) are admitted as before.
        """
        try:
            content = decode_content(plaintext)
        except PeerContentError:
            return True  # stored as is; the application sees it as unreadable
        body = content.body
        if not isinstance(body, GroupMessage | GroupChange):
            return True
        resend_of = content.resend_of
        try:
            group_id = UUID(body.group_id)
        except ValueError:
            return False
        if resend_of is None or not self._groups.take_resend(source, device, resend_of, group_id):
            if isinstance(body, GroupMessage):
                _log.info("dropping a group message sent 1:1 that answers no retry request")
                return False
            return True
        if isinstance(body, GroupChange) and body.action in (GroupAction.REMOVED, GroupAction.LEFT):
            self._groups.request_rotation(group_id)
        return True

    def store_group_message(self, envelope: Envelope, source: UUID, device: int) -> bool:
        """Decrypts a group message (type 7) into the inbox, once.

        One that does not decrypt is stored as undecryptable (once), and its sender device
        is asked to resend it: a retry request for a SenderKey message (no ratchet key), as
        libsignal's ``DecryptionErrorMessage.forOriginal`` makes it.

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
        except SignalProtocolError as exc:
            if isinstance(exc, NoSenderKeyStateError):
                _log.warning("a group message arrived before its sender key")
                reason_bytes = b"cannot decrypt: the sender's key has not arrived"
            else:
                _log.warning("cannot decrypt a group message: %s", type(exc).__name__)
                reason_bytes = f"cannot decrypt: {type(exc).__name__}".encode()
            return self._undecryptable(envelope, source, device, reason_bytes)
        except PeerContentError as exc:  # decrypted, but not group content of this group
            _log.warning("refusing a group message: %s", exc)
            reason_bytes = b"cannot decrypt: PeerContentError"
            return self._add(InboxKind.UNDECRYPTABLE, envelope, source, device, reason_bytes)
        except Exception as exc:  # a bug in decoding; still never let one block the mailbox
            _log.error("decrypting a group message failed: %s", type(exc).__name__)
            reason_bytes = f"cannot decrypt: {type(exc).__name__}".encode()
            return self._add(InboxKind.UNDECRYPTABLE, envelope, source, device, reason_bytes)

    def _undecryptable(self, envelope: Envelope, source: UUID, device: int, reason: bytes) -> bool:
        # Stored once; the first time, the sender device is asked to resend it. Without a
        # readable distribution id there is no group to bind a resend to: nothing is asked.
        try:
            group_id: UUID | None = SenderKeyMessage.deserialize(envelope.body).distribution_id
        except SignalProtocolError:
            group_id = None
        with self._store.transaction():
            stored = self._add(InboxKind.UNDECRYPTABLE, envelope, source, device, reason)
            if stored and group_id is not None:
                self._groups.expect_resend(source, device, envelope.message_id, group_id)
        if stored and group_id is not None and self._on_undecryptable is not None:
            request = retry_request_for(
                EnvelopeType.SENDER_KEY, envelope.body, timestamp=envelope.timestamp, device=device
            )
            self._on_undecryptable(source, device, request)
        return stored

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
