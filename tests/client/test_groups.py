"""The client's group receive side and key bookkeeping, without sockets (real Sender Keys,
real SQLite): sender keys absorbed from 1:1 content, group messages stored once, forged or
misdirected group content refused, rotation requested by a removal, and a key given at a later
position hiding earlier messages."""

from __future__ import annotations

import os
from uuid import UUID

import pytest

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
from kurir.client.group_store import GroupKeys, GroupReceiver, SqliteSenderKeyStore
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
    member = (UUID(int=5), 1)
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


def test_a_message_before_its_key_asks_for_the_key(store: ClientStore) -> None:
    asked: list[tuple[UUID, int, UUID]] = []
    receiver = GroupReceiver(store, on_missing_key=lambda *a: asked.append(a))
    sender = Sender()
    sender.distribution()  # the sender has a chain; we never got it
    early = sender.envelope(text("lost"))
    assert receiver.store_group_message(early, SENDER, 2)
    assert not receiver.store_group_message(early, SENDER, 2)  # redelivered: asked once
    assert asked == [(SENDER, 2, GROUP)]
    assert inbox_texts(store) == ["<undecryptable>"]


def test_a_key_request_makes_us_give_the_key_again(store: ClientStore) -> None:
    receiver = GroupReceiver(store)
    keys = GroupKeys(store)
    requester = (UUID(int=7), 3)
    keys.add_holders(GROUP, {requester, (UUID(int=8), 1)})
    request = encode_content(Content(SenderKeyRequest(str(GROUP)), sent_at=1))
    assert receiver.absorb(request, *requester) is True
    assert keys.holders(GROUP) == {(UUID(int=8), 1)}
    bad = encode_content(Content(SenderKeyRequest("not-a-uuid"), sent_at=1))
    assert receiver.absorb(bad, *requester) is True  # consumed, nothing changed
    assert keys.holders(GROUP) == {(UUID(int=8), 1)}
