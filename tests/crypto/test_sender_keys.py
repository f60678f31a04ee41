"""Tests of Sender Keys: chains, messages, limits, and rejection that leaves state unchanged."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidSignatureError,
    InvalidStateError,
    LegacyMessageError,
    NoSenderKeyStateError,
    UnrecognizedVersionError,
)
from kurir.crypto.sender_key_record import (
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_SENDER_KEY_STATES,
    SenderChainKey,
    SenderKeyRecord,
    SenderKeyState,
)
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

ALICE = ProtocolAddress("alice", DeviceId(1))
BOB = ProtocolAddress("bob", DeviceId(1))
CAROL = ProtocolAddress("carol", DeviceId(2))
GROUP = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000001")


class Group:
    """Alice sends; Bob and Carol each hold her chain in their own store."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed).randbytes
        self.alice = InMemorySenderKeyStore()
        self.bob = InMemorySenderKeyStore()
        self.carol = InMemorySenderKeyStore()
        skdm = create_sender_key_distribution_message(ALICE, GROUP, self.alice, self.rng)
        wire = SenderKeyDistributionMessage.deserialize(skdm.serialized)
        process_sender_key_distribution_message(ALICE, wire, self.bob)
        process_sender_key_distribution_message(ALICE, wire, self.carol)

    def send(self, text: bytes) -> bytes:
        return group_encrypt(self.alice, ALICE, GROUP, text, self.rng).serialized

    def bob_record(self) -> bytes:
        record = self.bob.load_sender_key(ALICE, GROUP)
        assert record is not None
        return record.serialize()

    def signed_by_alice(
        self, *, iteration: int, ciphertext: bytes, chain_id: int | None = None
    ) -> bytes:
        # A message made with Alice's real signing key, to reach the checks after the signature.
        record = self.alice.load_sender_key(ALICE, GROUP)
        assert record is not None
        state = record.states[0]
        assert state.signing_private_key is not None
        return SenderKeyMessage.create(
            distribution_id=GROUP,
            chain_id=state.chain_id if chain_id is None else chain_id,
            iteration=iteration,
            ciphertext=ciphertext,
            signing_key=KeyPair(state.signing_private_key, state.signing_key),
            rng=self.rng,
        ).serialized


def test_round_trip_to_every_member() -> None:
    group = Group()
    for i in range(5):
        body = group.send(b"message %d" % i)
        assert group_decrypt(body, group.bob, ALICE) == b"message %d" % i
        assert group_decrypt(body, group.carol, ALICE) == b"message %d" % i


def test_message_and_distribution_formats() -> None:
    group = Group()
    skdm = create_sender_key_distribution_message(ALICE, GROUP, group.alice, group.rng)
    assert skdm.serialized[0] == 0x33
    assert skdm.distribution_id == GROUP
    assert 0 <= skdm.chain_id < 2**31
    assert len(skdm.chain_key) == 32
    body = group.send(b"x")
    assert body[0] == 0x33
    parsed = SenderKeyMessage.deserialize(body)
    assert (parsed.distribution_id, parsed.chain_id, parsed.iteration) == (GROUP, skdm.chain_id, 0)
    assert len(parsed.ciphertext) == 16  # one AES block of PKCS#7-padded plaintext
    assert parsed.verify_signature(skdm.signing_key)
    # The next distribution message carries the advanced chain, not the first one.
    again = create_sender_key_distribution_message(ALICE, GROUP, group.alice, group.rng)
    assert again.iteration == 1
    assert again.chain_id == skdm.chain_id


def test_chain_key_schedule_known_answer() -> None:
    # HMAC-SHA256(ck, 0x01) / (ck, 0x02); HKDF "WhisperGroup" -> iv 16 + key 32.
    chain = SenderChainKey(0, bytes(range(32)))
    key = chain.message_key()
    iv, cipher_key = key.derive()
    assert len(iv) == 16
    assert len(cipher_key) == 32
    assert chain.next().iteration == 1
    assert chain.next().seed != chain.seed
    assert chain.next().message_key().seed != key.seed
    with pytest.raises(InvalidStateError):
        SenderChainKey(2**32 - 1, bytes(32)).next()


def test_out_of_order_and_duplicates() -> None:
    group = Group()
    bodies = [group.send(b"m%d" % i) for i in range(6)]
    for i in (3, 0, 5, 1, 4, 2):
        assert group_decrypt(bodies[i], group.bob, ALICE) == b"m%d" % i
    for i in (0, 3, 5):
        before = group.bob_record()
        with pytest.raises(DuplicateMessageError):
            group_decrypt(bodies[i], group.bob, ALICE)
        assert group.bob_record() == before


def test_skipped_keys_survive_a_restart() -> None:
    group = Group()
    bodies = [group.send(b"m%d" % i) for i in range(3)]
    group_decrypt(bodies[2], group.bob, ALICE)
    restored = InMemorySenderKeyStore()
    record = group.bob.load_sender_key(ALICE, GROUP)
    assert record is not None
    restored.store_sender_key(ALICE, GROUP, SenderKeyRecord.deserialize(record.serialize()))
    assert group_decrypt(bodies[0], restored, ALICE) == b"m0"
    assert group_decrypt(bodies[1], restored, ALICE) == b"m1"


def test_tampered_message_is_rejected_and_changes_nothing() -> None:
    group = Group()
    body = group.send(b"secret")
    before = group.bob_record()
    for index in (0, 5, len(body) - 70, len(body) - 1):
        forged = bytearray(body)
        forged[index] ^= 0x01
        with pytest.raises((InvalidSignatureError, InvalidMessageError, NoSenderKeyStateError)):
            group_decrypt(bytes(forged), group.bob, ALICE)
        assert group.bob_record() == before
    assert group_decrypt(body, group.bob, ALICE) == b"secret"


def test_signature_by_another_key_is_rejected() -> None:
    group = Group()
    record = group.alice.load_sender_key(ALICE, GROUP)
    assert record is not None
    state = record.states[0]
    forged = SenderKeyMessage.create(
        distribution_id=GROUP,
        chain_id=state.chain_id,
        iteration=0,
        ciphertext=bytes(16),
        signing_key=KeyPair.generate(group.rng),
        rng=group.rng,
    )
    before = group.bob_record()
    with pytest.raises(InvalidSignatureError):
        group_decrypt(forged.serialized, group.bob, ALICE)
    assert group.bob_record() == before


@pytest.mark.parametrize("ciphertext", [b"", bytes(15), bytes(32)])
def test_signed_garbage_ciphertext_is_invalid_and_changes_nothing(ciphertext: bytes) -> None:
    group = Group()
    before = group.bob_record()
    with pytest.raises(InvalidMessageError):
        group_decrypt(group.signed_by_alice(iteration=3, ciphertext=ciphertext), group.bob, ALICE)
    assert group.bob_record() == before


def test_forward_jump_limit() -> None:
    group = Group()
    before = group.bob_record()
    too_far = group.signed_by_alice(iteration=MAX_FORWARD_JUMPS + 1, ciphertext=bytes(16))
    with pytest.raises(InvalidMessageError, match="too far"):
        group_decrypt(too_far, group.bob, ALICE)
    assert group.bob_record() == before


def test_forward_jump_of_exactly_the_limit_is_accepted() -> None:
    group = Group()
    record = group.alice.load_sender_key(ALICE, GROUP)
    assert record is not None
    state = record.states[0]
    chain = state.chain_key
    for _ in range(MAX_FORWARD_JUMPS):
        chain = chain.next()
    advanced = record.with_state_replaced(replace(state, chain_key=chain))
    group.alice.store_sender_key(ALICE, GROUP, advanced)
    assert group_decrypt(group.send(b"far"), group.bob, ALICE) == b"far"


def test_skipped_keys_are_capped_oldest_first() -> None:
    group = Group()
    record = group.alice.load_sender_key(ALICE, GROUP)
    assert record is not None
    state = record.states[0]
    jump = MAX_MESSAGE_KEYS + 10
    # Move Alice's chain far ahead without encrypting every message.
    chain = state.chain_key
    for _ in range(jump):
        chain = chain.next()
    group.alice.store_sender_key(
        ALICE, GROUP, record.with_state_replaced(replace(state, chain_key=chain))
    )
    late = group.send(b"late")
    assert group_decrypt(late, group.bob, ALICE) == b"late"
    bob_record = group.bob.load_sender_key(ALICE, GROUP)
    assert bob_record is not None
    kept = bob_record.states[0].message_keys
    assert len(kept) == MAX_MESSAGE_KEYS
    assert kept[0].iteration == jump - MAX_MESSAGE_KEYS
    assert kept[-1].iteration == jump - 1


def test_missing_state_errors() -> None:
    group = Group()
    body = group.send(b"x")
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(body, InMemorySenderKeyStore(), ALICE)
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(body, group.bob, CAROL)  # Bob holds no chain from Carol
    unknown_chain = group.signed_by_alice(iteration=0, ciphertext=bytes(16), chain_id=12345)
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(unknown_chain, group.bob, ALICE)
    with pytest.raises(NoSenderKeyStateError):
        group_encrypt(group.bob, BOB, GROUP, b"x", group.rng)
    with pytest.raises(InvalidStateError):
        group_encrypt(group.bob, ALICE, GROUP, b"x", group.rng)  # Bob has no private key


@pytest.mark.parametrize(
    ("first", "error"),
    [(0x23, LegacyMessageError), (0x43, UnrecognizedVersionError), (0x13, LegacyMessageError)],
)
def test_other_versions_are_refused(first: int, error: type[Exception]) -> None:
    group = Group()
    body = bytearray(group.send(b"x"))
    body[0] = first
    with pytest.raises(error):
        group_decrypt(bytes(body), group.bob, ALICE)
    skdm = bytearray(
        create_sender_key_distribution_message(ALICE, GROUP, group.alice, group.rng).serialized
    )
    skdm[0] = first
    with pytest.raises(error):
        SenderKeyDistributionMessage.deserialize(bytes(skdm))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x33" + bytes(63),
        b"\x33\xff" + bytes(70),
        b"\x33\x0a\x03abc\x10\x01\x18\x00\x22\x10" + bytes(16) + bytes(64),  # short uuid
        b"\x33\x10\x01\x18\x00\x22\x10" + bytes(16) + bytes(64),  # no uuid
    ],
)
def test_malformed_messages_are_invalid(data: bytes) -> None:
    group = Group()
    with pytest.raises(InvalidMessageError):
        group_decrypt(data, group.bob, ALICE)


def test_malformed_distribution_messages_are_invalid() -> None:
    group = Group()
    good = create_sender_key_distribution_message(ALICE, GROUP, group.alice, group.rng)
    for data in (good.serialized[:40], good.serialized[:-1], b"\x33" + bytes(80)):
        with pytest.raises(InvalidMessageError):
            SenderKeyDistributionMessage.deserialize(data)


def test_new_chain_after_rotation_keeps_old_chain_readable() -> None:
    group = Group()
    old = group.send(b"old")
    # Alice rotates (e.g. after Carol left): a new chain for the same distribution id.
    skdm = rotate_sender_key(ALICE, GROUP, group.alice, group.rng)
    assert skdm.iteration == 0
    assert create_sender_key_distribution_message(ALICE, GROUP, group.alice, group.rng) == skdm
    process_sender_key_distribution_message(ALICE, skdm, group.bob)
    new = group.send(b"new")
    assert SenderKeyMessage.deserialize(new).chain_id == skdm.chain_id
    assert group_decrypt(new, group.bob, ALICE) == b"new"
    assert group_decrypt(old, group.bob, ALICE) == b"old"
    with pytest.raises(NoSenderKeyStateError):
        group_decrypt(new, group.carol, ALICE)  # Carol never got the new chain
    record = group.bob.load_sender_key(ALICE, GROUP)
    assert record is not None
    assert record.states[0].chain_id == skdm.chain_id


def _state(chain_id: int, key: KeyPair, seed: bytes) -> SenderKeyState:
    return SenderKeyState(3, chain_id, SenderChainKey(0, seed), key.public_key)


def test_record_keeps_at_most_five_states_newest_first() -> None:
    rng = random.Random(3).randbytes
    keys = [KeyPair.generate(rng) for _ in range(MAX_SENDER_KEY_STATES + 1)]
    record = SenderKeyRecord()
    for i, key in enumerate(keys):
        record = record.with_state_added(_state(i + 1, key, bytes([i]) * 32))
    assert [s.chain_id for s in record.states] == [6, 5, 4, 3, 2]


def test_record_same_chain_and_key_keeps_progress_other_key_replaces() -> None:
    rng = random.Random(4).randbytes
    k1, k2 = KeyPair.generate(rng), KeyPair.generate(rng)
    record = SenderKeyRecord().with_state_added(_state(1, k1, b"\x01" * 32))
    record = record.with_state_added(_state(2, k2, b"\x02" * 32))
    record = record.with_state_added(_state(1, k1, b"\x03" * 32))
    assert [s.chain_id for s in record.states] == [1, 2]
    assert record.states[0].chain_key.seed == b"\x01" * 32
    record = record.with_state_added(_state(1, k2, b"\x04" * 32))
    assert [s.chain_id for s in record.states] == [1, 2]
    assert record.states[0].chain_key.seed == b"\x04" * 32


def test_record_serialization_is_versioned() -> None:
    group = Group()
    group_decrypt(group.send(b"a"), group.bob, ALICE)
    data = group.bob_record()
    assert data[0] == 1
    assert SenderKeyRecord.deserialize(data).serialize() == data
    for bad in (b"", b"\x02" + data[1:], b"\x01\x0a\x05\x08"):
        with pytest.raises(InvalidStateError):
            SenderKeyRecord.deserialize(bad)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 30),
    data=st.data(),
)
def test_any_delivery_order_decrypts_each_message_exactly_once(
    count: int, data: st.DataObject
) -> None:
    group = Group(seed=count)
    bodies = [group.send(b"m%d" % i) for i in range(count)]
    # Deliver a random selection (drops), in random order, with random duplicates.
    order = data.draw(st.lists(st.integers(0, count - 1), max_size=3 * count))
    delivered: set[int] = set()
    for index in order:
        if index in delivered:
            with pytest.raises(DuplicateMessageError):
                group_decrypt(bodies[index], group.bob, ALICE)
        else:
            assert group_decrypt(bodies[index], group.bob, ALICE) == b"m%d" % index
            delivered.add(index)
    # Whatever was dropped can still be read later, once.
    for index in sorted(set(range(count)) - delivered):
        assert group_decrypt(bodies[index], group.bob, ALICE) == b"m%d" % index
