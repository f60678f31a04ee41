"""The client's group receive side and key bookkeeping, without sockets (real Sender Keys,
real SQLite): sender keys absorbed from 1:1 content, group messages stored once, forged or
misdirected group content refused, rotation requested by a removal, a key given at a later
position hiding earlier messages, a retry request for a group message that did not decrypt and
only its resend admitted 1:1, holders keyed by registration id, and the group tables' migration
from group schema 1."""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

import pytest

from kurir.client.atrest import KeyFile
from kurir.client.content import (
    Content,
    GroupAction,
    GroupChange,
    GroupMessage,
    SenderKeyDistribution,
    SenderKeyRequest,
    Text,
    decode_content,
    encode_content,
)
from kurir.client.errors import StoreError
from kurir.client.group_store import (
    GROUP_SCHEMA_VERSION,
    MAX_PENDING_RESENDS,
    UNKNOWN_REGISTRATION,
    GroupKeys,
    GroupReceiver,
    SqliteSenderKeyStore,
)
from kurir.client.groups import by_device, devices_without_key, holders_gone
from kurir.client.retry import RetryRequest
from kurir.client.store import ClientStore, InboxKind
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.errors import DuplicateMessageError
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    rotate_sender_key,
)
from kurir.wire.frames import Envelope, EnvelopeType

GROUP = UUID(int=0xAB)
SENDER = UUID(int=0x51)
ME = ProtocolAddress(str(SENDER), DeviceId(2))


class Sender:
    """One member device's sending side, with its own in-memory sender key store."""

    def __init__(self) -> None:
        self.keys = InMemorySenderKeyStore()
        self.seq = 0

    def distribution(self, group: UUID = GROUP) -> bytes:
        message = create_sender_key_distribution_message(ME, GROUP, self.keys, os.urandom)
        content = Content(SenderKeyDistribution(str(group), message.serialized), sent_at=1)
        return encode_content(content)

    def envelope(self, body: GroupMessage | GroupChange | Text) -> Envelope:
        sealed = group_encrypt(
            self.keys, ME, GROUP, encode_content(Content(body, sent_at=2)), os.urandom
        )
        self.seq += 1
        return Envelope(
            seq=self.seq,
            type=EnvelopeType.SENDER_KEY,
            source=SENDER,
            source_device=2,
            source_address="messenger:42",
            message_id=os.urandom(16),
            timestamp=2,
            server_timestamp=3,
            body=sealed.serialized,
        )


def text(words: str, group: UUID = GROUP) -> GroupMessage:
    return GroupMessage(str(group), Text(words))


@pytest.fixture
def store() -> ClientStore:
    return ClientStore.in_memory(lambda: 1_000)


def inbox_texts(store: ClientStore) -> list[str]:
    out = []
    for item in store.inbox():
        assert item.content is not None
        if item.kind != InboxKind.MESSAGE:
            out.append(f"<{item.kind}>")
            continue
        body = decode_content(item.content).body
        assert isinstance(body, GroupMessage)
        assert isinstance(body.message, Text)
        out.append(body.message.text)
    return out


def test_group_message_is_stored_once_after_the_sender_key(store: ClientStore) -> None:
    receiver = GroupReceiver(store)
    sender = Sender()
    key = sender.distribution()
    early = sender.envelope(text("before the key arrived"))
    # before the key: stored as undecryptable (its content is lost, never silently)
    assert receiver.store_group_message(early, SENDER, 2)
    assert receiver.absorb(key, SENDER, 2)
    hello = sender.envelope(text("halo"))
    assert receiver.store_group_message(hello, SENDER, 2)
    assert not receiver.store_group_message(hello, SENDER, 2)  # redelivered: dropped
    assert inbox_texts(store) == ["<undecryptable>", "halo"]


def test_absorb_takes_only_sender_keys(store: ClientStore) -> None:
    receiver = GroupReceiver(store)
    sender = Sender()
    assert receiver.absorb(encode_content(Content(Text("hi"), sent_at=1)), SENDER, 2) is False
    assert receiver.absorb(b"not content", SENDER, 2) is False
    # a key announced for another group than its distribution id is consumed and ignored
    assert receiver.absorb(sender.distribution(group=UUID(int=1)), SENDER, 2) is True
    keys = SqliteSenderKeyStore(store)
    assert keys.load_sender_key(ProtocolAddress(str(SENDER), DeviceId(2)), GROUP) is None
    assert receiver.absorb(sender.distribution(), SENDER, 2) is True
    assert keys.load_sender_key(ProtocolAddress(str(SENDER), DeviceId(2)), GROUP) is not None


def test_a_key_from_another_device_does_not_decrypt(store: ClientStore) -> None:
    receiver = GroupReceiver(store)
    sender = Sender()
    receiver.absorb(sender.distribution(), SENDER, 3)  # claimed by device 3, not 2
    assert receiver.store_group_message(sender.envelope(text("x")), SENDER, 2)
    assert inbox_texts(store) == ["<undecryptable>"]


def test_misdirected_or_non_group_content_is_refused(store: ClientStore) -> None:
    receiver = GroupReceiver(store)
    sender = Sender()
    receiver.absorb(sender.distribution(), SENDER, 2)
    assert receiver.store_group_message(sender.envelope(text("x", UUID(int=9))), SENDER, 2)
    assert receiver.store_group_message(sender.envelope(Text("looks 1:1")), SENDER, 2)
    assert receiver.store_group_message(sender.envelope(text("fine")), SENDER, 2)
    assert inbox_texts(store) == ["<undecryptable>", "<undecryptable>", "fine"]


def test_removal_requests_rotation_and_holders_are_tracked(store: ClientStore) -> None:
    receiver = GroupReceiver(store)
    keys = GroupKeys(store)
    sender = Sender()
    receiver.absorb(sender.distribution(), SENDER, 2)
    member = (UUID(int=5), 1, 4711)
    keys.add_holders(GROUP, {member})
    assert keys.holders(GROUP) == {member}
    assert not keys.rotation_requested(GROUP)
    change = GroupChange(str(GROUP), GroupAction.REMOVED, "n", [str(UUID(int=5))], 3)
    assert receiver.store_group_message(sender.envelope(change), SENDER, 2)
    assert keys.rotation_requested(GROUP)
    with store.transaction():
        keys.start_new_key(GROUP)
    assert keys.holders(GROUP) == set()
    assert not keys.rotation_requested(GROUP)


def test_rotated_key_and_late_key_hide_other_messages() -> None:
    sender = Sender()
    early = sender.distribution()
    before = sender.envelope(text("before the late joiner"))
    late_store = ClientStore.in_memory(lambda: 1)
    late = GroupReceiver(late_store)
    late.absorb(sender.distribution(), SENDER, 2)  # the key at its current position
    # an earlier chain position looks like a replay to the late key: dropped, nothing stored
    assert not late.store_group_message(before, SENDER, 2)
    assert inbox_texts(late_store) == []
    keys = SqliteSenderKeyStore(late_store)
    with pytest.raises(DuplicateMessageError):
        group_decrypt(before.body, keys, ProtocolAddress(str(SENDER), DeviceId(2)))

    removed_store = ClientStore.in_memory(lambda: 1)
    removed = GroupReceiver(removed_store)
    removed.absorb(early, SENDER, 2)
    rotate_sender_key(ME, GROUP, sender.keys, os.urandom)  # the removed one is not told
    assert removed.store_group_message(sender.envelope(text("after removal")), SENDER, 2)
    assert inbox_texts(removed_store) == ["<undecryptable>"]


def test_a_message_before_its_key_asks_for_a_resend_once(store: ClientStore) -> None:
    asked: list[tuple[UUID, int, RetryRequest]] = []
    receiver = GroupReceiver(store, on_undecryptable=lambda *a: asked.append(a))
    sender = Sender()
    sender.distribution()  # the sender has a chain; we never got it
    early = sender.envelope(text("lost"))
    assert receiver.store_group_message(early, SENDER, 2)
    assert not receiver.store_group_message(early, SENDER, 2)  # redelivered: asked once
    # libsignal's DecryptionErrorMessage for a SenderKey message: no ratchet key
    assert asked == [(SENDER, 2, RetryRequest(timestamp=2, device=2, ratchet_key=None))]
    assert inbox_texts(store) == ["<undecryptable>"]


def test_misdirected_content_asks_for_no_resend(store: ClientStore) -> None:
    asked: list[object] = []
    receiver = GroupReceiver(store, on_undecryptable=lambda *a: asked.append(a))
    sender = Sender()
    receiver.absorb(sender.distribution(), SENDER, 2)
    assert receiver.store_group_message(sender.envelope(text("x", UUID(int=9))), SENDER, 2)
    assert asked == []  # a resend would carry the same content


def resend(body: GroupMessage | GroupChange, of: bytes | None) -> bytes:
    return encode_content(Content(body, sent_at=2, resend_of=of))


def test_group_content_over_1to1_is_admitted_only_as_an_asked_for_resend(
    store: ClientStore,
) -> None:
    receiver = GroupReceiver(store, on_undecryptable=lambda *a: None)
    sender = Sender()
    sender.distribution()
    failed = sender.envelope(text("lost"))
    assert receiver.store_group_message(failed, SENDER, 2)
    lost = failed.message_id
    with store.transaction():
        # not a resend, or of a message we never asked for, or from another device or group
        assert not receiver.admits_direct(resend(text("forged"), None), SENDER, 2)
        assert not receiver.admits_direct(resend(text("forged"), os.urandom(16)), SENDER, 2)
        assert not receiver.admits_direct(resend(text("forged"), lost), SENDER, 3)
        assert not receiver.admits_direct(resend(text("x", UUID(int=9)), lost), SENDER, 2)
        # a removal told 1:1 to the removed member, and non-group content: as before
        told = GroupChange(str(GROUP), GroupAction.REMOVED, "n", [str(UUID(int=5))], 3)
        assert receiver.admits_direct(resend(told, None), SENDER, 2)
        assert receiver.admits_direct(encode_content(Content(Text("hi"), sent_at=1)), SENDER, 2)
        assert not GroupKeys(store).rotation_requested(GROUP)
        # the answer to our retry request: once
        assert receiver.admits_direct(resend(text("lost"), lost), SENDER, 2)
        assert not receiver.admits_direct(resend(text("lost"), lost), SENDER, 2)


def test_a_resent_removal_requests_rotation(store: ClientStore) -> None:
    receiver = GroupReceiver(store, on_undecryptable=lambda *a: None)
    sender = Sender()
    sender.distribution()
    change = GroupChange(str(GROUP), GroupAction.REMOVED, "n", [str(UUID(int=5))], 3)
    failed = sender.envelope(change)
    assert receiver.store_group_message(failed, SENDER, 2)
    with store.transaction():
        assert receiver.admits_direct(resend(change, failed.message_id), SENDER, 2)
    assert GroupKeys(store).rotation_requested(GROUP)


def test_a_key_request_of_an_older_client_makes_us_give_the_key_again(
    store: ClientStore,
) -> None:
    receiver = GroupReceiver(store)
    keys = GroupKeys(store)
    requester = (UUID(int=7), 3)
    keys.add_holders(GROUP, {(*requester, 70), (UUID(int=8), 1, 80)})
    request = encode_content(Content(SenderKeyRequest(str(GROUP)), sent_at=1))
    assert receiver.absorb(request, *requester) is True
    assert keys.holders(GROUP) == {(UUID(int=8), 1, 80)}
    bad = encode_content(Content(SenderKeyRequest("not-a-uuid"), sent_at=1))
    assert receiver.absorb(bad, *requester) is True  # consumed, nothing changed
    assert keys.holders(GROUP) == {(UUID(int=8), 1, 80)}


A, B = UUID(int=0xA), UUID(int=0xB)


def test_a_re_registered_device_holds_nothing_and_forces_a_new_key() -> None:
    holders = by_device({(A, 1, 100), (B, 1, 200), (B, 2, 201)})
    same = {(A, 1): 100, (B, 1): 200, (B, 2): 201}
    assert not holders_gone(holders, same)
    assert devices_without_key(holders, same) == {}
    # B's device 2 re-linked (same device id, new registration id): the old installation
    # held our key, so a new key; the new one holds nothing
    relinked = {**same, (B, 2): 999}
    assert holders_gone(holders, relinked)
    assert devices_without_key(holders, relinked) == {B: {2}}
    # a device removed, and a device added
    assert holders_gone(holders, {(A, 1): 100, (B, 1): 200})
    assert devices_without_key(holders, {**same, (A, 2): 102}) == {A: {2}}


def test_unknown_registration_ids_give_the_key_again_but_force_no_new_key() -> None:
    migrated = by_device({(A, 1, UNKNOWN_REGISTRATION)})  # given before group schema 2
    assert not holders_gone(migrated, {(A, 1): 100})
    assert devices_without_key(migrated, {(A, 1): 100}) == {A: {1}}
    # a server or session that does not tell: the device gets the key every time
    known = by_device({(A, 1, 100)})
    assert not holders_gone(known, {(A, 1): UNKNOWN_REGISTRATION})
    assert devices_without_key(known, {(A, 1): UNKNOWN_REGISTRATION}) == {A: {1}}


def test_group_schema_1_profiles_are_migrated_forward(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    key = KeyFile(tmp_path / "profile.key")
    store = ClientStore.open(profile, lambda: 1, key)
    sender = Sender()
    sender.distribution()
    me = ProtocolAddress(str(SENDER), DeviceId(2))
    with store.transaction():  # the group tables exactly as group schema 1 made them
        store.connection.execute(
            "CREATE TABLE group_sender_keys (name TEXT NOT NULL, device_id INTEGER NOT NULL,"
            " distribution_id TEXT NOT NULL, record BLOB NOT NULL,"
            " PRIMARY KEY (name, device_id, distribution_id))"
        )
        store.connection.execute(
            "CREATE TABLE group_key_holders (group_id TEXT NOT NULL, account_id TEXT NOT NULL,"
            " device_id INTEGER NOT NULL, PRIMARY KEY (group_id, account_id, device_id))"
        )
        store.connection.execute("CREATE TABLE group_rotations (group_id TEXT PRIMARY KEY)")
        store.connection.execute(
            "INSERT INTO group_key_holders VALUES (?, ?, 1), (?, ?, 2)",
            (str(GROUP), str(A), str(GROUP), str(B)),
        )
        store.connection.execute("INSERT INTO group_rotations VALUES (?)", (str(GROUP),))
    record = sender.keys.load_sender_key(me, GROUP)
    assert record is not None
    where = (me.name, me.device_id, str(GROUP))  # sealed as encryption at rest seals it
    sealed = store.cipher.seal(record.serialize(), "group_sender_keys", "record", *where)
    store.connection.execute("INSERT INTO group_sender_keys VALUES (?, ?, ?, ?)", (*where, sealed))
    store.close()

    store = ClientStore.open(profile, lambda: 1, key)
    keys = GroupKeys(store)
    version = store.connection.execute("SELECT version FROM group_schema").fetchone()
    assert version == (GROUP_SCHEMA_VERSION,)
    assert keys.holders(GROUP) == {(A, 1, UNKNOWN_REGISTRATION), (B, 2, UNKNOWN_REGISTRATION)}
    assert keys.rotation_requested(GROUP)
    loaded = SqliteSenderKeyStore(store).load_sender_key(me, GROUP)
    assert loaded is not None
    assert loaded.serialize() == record.serialize()
    keys.add_holders(GROUP, {(A, 1, 100)})  # given again: replaces the unknown one
    assert keys.holders(GROUP) == {(A, 1, 100), (B, 2, UNKNOWN_REGISTRATION)}
    store.close()
    GroupKeys(ClientStore.open(profile, lambda: 1, key))  # opening again changes nothing


def test_a_newer_group_schema_is_refused(tmp_path: Path) -> None:
    store = ClientStore.open(tmp_path / "p", lambda: 1, KeyFile(tmp_path / "p.key"))
    GroupKeys(store)
    store.connection.execute("UPDATE group_schema SET version = version + 1")
    with pytest.raises(StoreError):
        GroupKeys(store)
    store.close()


def test_pending_resends_are_bounded(store: ClientStore) -> None:
    keys = GroupKeys(store)
    first = os.urandom(16)
    keys.expect_resend(SENDER, 2, first, GROUP)
    for _ in range(MAX_PENDING_RESENDS):
        keys.expect_resend(SENDER, 2, os.urandom(16), GROUP)
    count = store.connection.execute("SELECT count(*) FROM group_resends").fetchone()
    assert count == (MAX_PENDING_RESENDS,)
    assert not keys.take_resend(SENDER, 2, first, GROUP)  # the oldest was forgotten
