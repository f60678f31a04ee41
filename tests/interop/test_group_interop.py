"""Live Sender Key groups between kurir and libsignal: members on both sides, both directions.

libsignal members are participants in the harness (their own stores); kurir members each have
an `InMemorySenderKeyStore`. Distribution messages are handed over as bytes, as they would be
inside 1:1 sessions.
"""

from __future__ import annotations

import os
import uuid

import pytest
from libsignal import Libsignal, LibsignalError

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.errors import DuplicateMessageError, InvalidSignatureError
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
    rotate_sender_key,
)

KURIR_MEMBERS = ("kurir-ana", "kurir-budi")
LIBSIGNAL_MEMBERS = ("ls-citra", "ls-dewi")


class MixedGroup:
    """Two kurir and two libsignal members; every member has every other member's chain."""

    def __init__(self, ls: Libsignal) -> None:
        self.ls = ls
        self.distribution_id = uuid.uuid4()
        self.dist = str(self.distribution_id)
        self.stores = {name: InMemorySenderKeyStore() for name in KURIR_MEMBERS}
        for name in LIBSIGNAL_MEMBERS:
            ls.create_participant(name)
        for sender in KURIR_MEMBERS:
            skdm = create_sender_key_distribution_message(
                self.address(sender), self.distribution_id, self.stores[sender], os.urandom
            )
            self.deliver_distribution(sender, skdm.serialized)
        for sender in LIBSIGNAL_MEMBERS:
            self.deliver_distribution(sender, ls.sender_key_distribution(sender, self.dist))

    @staticmethod
    def address(name: str) -> ProtocolAddress:
        return ProtocolAddress(name, DeviceId(1))

    def deliver_distribution(self, sender: str, skdm: bytes) -> None:
        for member in (*KURIR_MEMBERS, *LIBSIGNAL_MEMBERS):
            if member == sender:
                continue
            if member in self.stores:
                parsed = SenderKeyDistributionMessage.deserialize(skdm)
                process_sender_key_distribution_message(
                    self.address(sender), parsed, self.stores[member]
                )
            else:
                self.ls.process_sender_key_distribution(member, sender, skdm)

    def send(self, sender: str, text: bytes) -> bytes:
        if sender in self.stores:
            return group_encrypt(
                self.stores[sender], self.address(sender), self.distribution_id, text, os.urandom
            ).serialized
        return self.ls.group_encrypt(sender, self.dist, text)

    def receive(self, member: str, sender: str, body: bytes) -> bytes:
        if member in self.stores:
            return group_decrypt(body, self.stores[member], self.address(sender))
        return self.ls.group_decrypt(member, sender, body)


def test_every_member_reads_every_other(libsignal: Libsignal) -> None:
    group = MixedGroup(libsignal)
    members = (*KURIR_MEMBERS, *LIBSIGNAL_MEMBERS)
    for round_ in range(3):
        for sender in members:
            text = f"{sender} round {round_}".encode()
            body = group.send(sender, text)
            for member in members:
                if member != sender:
                    assert group.receive(member, sender, body) == text


def test_out_of_order_and_duplicates_both_ways(libsignal: Libsignal) -> None:
    group = MixedGroup(libsignal)
    order = (4, 0, 2, 5, 1, 3)
    # libsignal sends, kurir receives out of order.
    bodies = [group.send("ls-citra", b"c%d" % i) for i in range(6)]
    for i in order:
        assert group.receive("kurir-ana", "ls-citra", bodies[i]) == b"c%d" % i
    with pytest.raises(DuplicateMessageError):
        group.receive("kurir-ana", "ls-citra", bodies[2])
    # kurir sends, libsignal receives out of order.
    bodies = [group.send("kurir-budi", b"b%d" % i) for i in range(6)]
    for i in order:
        assert group.receive("ls-dewi", "kurir-budi", bodies[i]) == b"b%d" % i
    with pytest.raises(LibsignalError) as info:
        group.receive("ls-dewi", "kurir-budi", bodies[2])
    assert info.value.code == "DuplicatedMessage"


def test_wire_fields_agree(libsignal: Libsignal) -> None:
    group = MixedGroup(libsignal)
    store = group.stores["kurir-ana"]
    ours = create_sender_key_distribution_message(
        group.address("kurir-ana"), group.distribution_id, store, os.urandom
    )
    info = libsignal.parse_sender_key_distribution(ours.serialized)
    assert info.version_byte == 0x33
    assert uuid.UUID(info.distribution_id) == group.distribution_id
    assert (info.chain_id, info.iteration, info.chain_key) == (
        ours.chain_id,
        ours.iteration,
        ours.chain_key,
    )
    assert info.signing_key == ours.signing_key.serialize()
    body = group.send("kurir-ana", b"hello")
    parsed = libsignal.parse_sender_key_message(body, signing_key=ours.signing_key.serialize())
    assert parsed.signature_valid is True
    assert parsed.iteration == ours.iteration
    # And libsignal's messages verify with the key from libsignal's distribution message.
    theirs = SenderKeyDistributionMessage.deserialize(
        libsignal.sender_key_distribution("ls-citra", group.dist)
    )
    message = SenderKeyMessage.deserialize(group.send("ls-citra", b"hi"))
    assert message.chain_id == theirs.chain_id
    assert message.verify_signature(theirs.signing_key)
    assert not message.verify_signature(ours.signing_key)


def test_forgery_is_rejected_on_both_sides(libsignal: Libsignal) -> None:
    group = MixedGroup(libsignal)
    body = bytearray(group.send("kurir-ana", b"genuine"))
    body[-10] ^= 0x40  # inside the signature
    with pytest.raises(LibsignalError):
        group.receive("ls-citra", "kurir-ana", bytes(body))
    body = bytearray(group.send("ls-dewi", b"genuine"))
    body[-70] ^= 0x01  # inside the ciphertext, covered by the signature
    with pytest.raises(InvalidSignatureError):
        group.receive("kurir-budi", "ls-dewi", bytes(body))
    # Both chains still work afterwards.
    assert group.receive("ls-citra", "kurir-ana", group.send("kurir-ana", b"a")) == b"a"
    assert group.receive("kurir-budi", "ls-dewi", group.send("ls-dewi", b"d")) == b"d"


def test_kurir_rotation_reaches_libsignal_members(libsignal: Libsignal) -> None:
    group = MixedGroup(libsignal)
    sender = "kurir-ana"
    old = group.send(sender, b"before rotation")
    skdm = rotate_sender_key(
        group.address(sender), group.distribution_id, group.stores[sender], os.urandom
    )
    libsignal.process_sender_key_distribution("ls-citra", sender, skdm.serialized)
    new = group.send(sender, b"after rotation")
    assert group.receive("ls-citra", sender, new) == b"after rotation"
    assert group.receive("ls-citra", sender, old) == b"before rotation"
    # ls-dewi was left out of the rotation: the new chain is unknown to it.
    with pytest.raises(LibsignalError):
        group.receive("ls-dewi", sender, new)
