"""Tests of session states and records: storage.proto round trips, archiving, trial decryption."""

from __future__ import annotations

import pytest
from signal_device import Device

from kurir.crypto.errors import DuplicateMessageError, InvalidMessageError, InvalidStateError
from kurir.crypto.session import (
    ARCHIVED_STATES_MAX_LENGTH,
    SessionRecord,
    SessionState,
)


def live_record() -> SessionRecord:
    """Alice's record after an unanswered start, skipped keys on Bob's side, and a restart."""
    alice, bob = Device("alice", 1), Device("bob", 2)
    alice.start(bob)
    messages = [alice.encrypt(bob, b"%d" % i) for i in range(4)]
    bob.decrypt(alice, messages[3])  # keys 0..2 skipped on bob's side
    alice.start(bob)  # a second session: bob archives the first when it arrives
    bob.decrypt(alice, alice.encrypt(bob, b"second session"))
    record = bob.sessions.load_session(alice.address)
    assert record is not None
    return record


def test_record_round_trip_keeps_every_field() -> None:
    alice, bob = Device("alice", 1), Device("bob", 2)
    alice.start(bob)
    message = alice.encrypt(bob, b"x")
    alice.encrypt(bob, b"y")
    bob.decrypt(alice, alice.encrypt(bob, b"z"))
    del message
    for record in (
        alice.sessions.load_session(bob.address),
        bob.sessions.load_session(alice.address),
    ):
        assert record is not None
        assert record.current is not None
        again = SessionRecord.deserialize(record.serialize())
        assert again == record
        assert again.serialize() == record.serialize()
    alice_record = alice.sessions.load_session(bob.address)
    assert alice_record is not None
    assert alice_record.current is not None
    assert alice_record.current.pending_pre_key is not None
    bob_record = bob.sessions.load_session(alice.address)
    assert bob_record is not None
    assert bob_record.current is not None
    (chain,) = bob_record.current.receiver_chains
    assert [index for index, _ in chain.message_keys] == [1, 0]  # newest first, as libsignal


def test_state_round_trip() -> None:
    record = live_record()
    assert record.current is not None
    state = next(record.previous_states())  # the first session, with skipped keys
    assert SessionState.deserialize(state.serialize()) == state
    assert state.clone() == state
    clone = state.clone()
    clone.receiver_chains[0].message_keys.clear()
    assert state.receiver_chains[0].message_keys  # the clone shares nothing mutable


@pytest.mark.parametrize(
    "data", [b"\x0a\x03\x08\x05\x00", b"\x0a\x05\x01", b"\x0a\x02\x08\x04", b"\xff\xff\xff"]
)
def test_corrupt_records_raise_invalid_state(data: bytes) -> None:
    with pytest.raises(InvalidStateError):
        SessionRecord.deserialize(data)


def test_unsupported_session_version_is_refused() -> None:
    record = live_record()
    assert record.current is not None
    record.current.session_version = 3
    with pytest.raises(InvalidStateError):
        SessionRecord.deserialize(record.serialize())


def test_archive_keeps_40_most_recent_first_and_forgets_pending_prekey() -> None:
    alice, bob = Device("alice", 1), Device("bob", 2)
    base_keys = []
    for _ in range(ARCHIVED_STATES_MAX_LENGTH + 2):
        alice.start(bob)
        record = alice.sessions.load_session(bob.address)
        assert record is not None
        assert record.current is not None
        base_keys.append(record.current.alice_base_key)
    record = alice.sessions.load_session(bob.address)
    assert record is not None
    archived = list(record.previous_states())
    assert len(archived) == ARCHIVED_STATES_MAX_LENGTH
    assert [s.alice_base_key for s in archived] == base_keys[-2::-1][:ARCHIVED_STATES_MAX_LENGTH]
    assert all(s.pending_pre_key is None for s in archived)
    record.archive_current_state()
    assert record.current is None
    assert not record.has_usable_sender_chain(alice.now)


def test_promote_matching_session() -> None:
    record = live_record()
    assert record.current is not None
    current_key = record.current.alice_base_key
    (old,) = list(record.previous_states())
    assert record.promote_matching_session(4, current_key)
    assert record.current.alice_base_key == current_key
    assert record.promote_matching_session(4, old.alice_base_key)
    assert record.current is not None
    assert record.current.alice_base_key == old.alice_base_key
    assert [s.alice_base_key for s in record.previous_states()] == [current_key]
    assert not record.promote_matching_session(4, b"\x05" + bytes(32))
    assert not record.promote_matching_session(3, current_key)


def test_trial_decrypt_order_promotion_and_atomicity() -> None:
    record = live_record()
    assert record.current is not None
    (old,) = list(record.previous_states())
    before = record.serialize()
    tried: list[bytes] = []

    def fails(state: SessionState) -> bytes:
        tried.append(state.alice_base_key)
        state.root_key = bytes(32)  # a failed attempt must not leak into the record
        raise InvalidMessageError("no")

    with pytest.raises(InvalidMessageError):
        record.trial_decrypt(fails, prekey=False)
    assert tried == [record.current.alice_base_key, old.alice_base_key]
    assert record.serialize() == before

    def only_old(state: SessionState) -> bytes:
        if state.alice_base_key != old.alice_base_key:
            raise InvalidMessageError("no")
        return b"plain"

    with pytest.raises(InvalidMessageError):  # a PreKey message tries the current state only
        record.trial_decrypt(only_old, prekey=True)
    assert record.trial_decrypt(only_old, prekey=False) == b"plain"
    assert record.current is not None
    assert record.current.alice_base_key == old.alice_base_key


def test_trial_decrypt_stops_at_a_duplicate() -> None:
    record = live_record()

    def duplicate(state: SessionState) -> bytes:
        raise DuplicateMessageError("seen")

    with pytest.raises(DuplicateMessageError):
        record.trial_decrypt(duplicate, prekey=False)


def test_trial_decrypt_skips_corrupt_archived_states() -> None:
    record = live_record()
    record.archived.insert(0, b"\xff\xff")
    target = record.archived[1]
    expected = SessionState.deserialize(target).alice_base_key

    def only(state: SessionState) -> bytes:
        if state.alice_base_key != expected:
            raise InvalidMessageError("no")
        return b"ok"

    assert record.trial_decrypt(only, prekey=False) == b"ok"
