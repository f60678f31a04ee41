"""Two kurir devices through the public session operations: PQXDH, ratchet, Sesame, errors.

Every failure case also checks that the stored session is byte-for-byte unchanged and still
usable afterwards.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from signal_device import Device

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidPreKeyBundleError,
    InvalidPreKeyMessageError,
    NoSessionError,
    UntrustedIdentityError,
)
from kurir.crypto.kem import KemType
from kurir.crypto.messages import PreKeySignalMessage, SignalMessage
from kurir.crypto.prekeys import KyberPreKeyId
from kurir.crypto.ratchet import MAX_FORWARD_JUMPS, next_chain_key
from kurir.crypto.session import (
    ARCHIVED_STATES_MAX_LENGTH,
    MAX_MESSAGE_KEYS,
    MAX_RECEIVER_CHAINS,
)
from kurir.crypto.session_cipher import process_prekey_bundle


def pair(seed: int = 0) -> tuple[Device, Device]:
    return Device("alice", 2 * seed + 1), Device("bob", 2 * seed + 2)


def record_bytes(device: Device, peer: Device) -> bytes | None:
    record = device.sessions.load_session(peer.address)
    return None if record is None else record.serialize()


def established(seed: int = 0) -> tuple[Device, Device]:
    alice, bob = pair(seed)
    alice.start(bob)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hello")) == b"hello"
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi")) == b"hi"
    return alice, bob


@pytest.mark.parametrize("kem_type", list(KemType))
@pytest.mark.parametrize("one_time", [True, False])
def test_session_both_ways_over_several_ratchet_steps(kem_type: KemType, one_time: bool) -> None:
    alice, bob = pair()
    alice.start(bob, one_time=one_time, kem_type=kem_type)
    first = alice.encrypt(bob, b"first")
    second = alice.encrypt(bob, b"second")
    assert isinstance(first, PreKeySignalMessage)
    assert isinstance(second, PreKeySignalMessage)
    assert first.base_key == second.base_key
    assert (first.pre_key_id is None) is not one_time
    assert first.kyber_ciphertext[0] == kem_type
    assert bob.decrypt(alice, first) == b"first"
    assert bob.decrypt(alice, second) == b"second"
    assert len(bob.pre_keys) == 0
    ratchet_keys = set()
    for step in range(6):
        reply = bob.encrypt(alice, f"bob {step}".encode())
        assert isinstance(reply, SignalMessage)
        ratchet_keys.add(reply.sender_ratchet_key)
        assert alice.decrypt(bob, reply) == f"bob {step}".encode()
        message = alice.encrypt(bob, f"alice {step}".encode())
        assert isinstance(message, SignalMessage)
        ratchet_keys.add(message.sender_ratchet_key)
        assert bob.decrypt(alice, message) == f"alice {step}".encode()
    assert len(ratchet_keys) == 12  # every turn is a new DH ratchet step


def test_out_of_order_within_and_across_chains() -> None:
    alice, bob = established()
    old = [alice.encrypt(bob, f"old {i}".encode()) for i in range(3)]
    assert bob.decrypt(alice, alice.encrypt(bob, b"trigger")) == b"trigger"  # counter 3
    alice.decrypt(bob, bob.encrypt(alice, b"step"))  # bob's new ratchet key: alice steps too
    new = [alice.encrypt(bob, f"new {i}".encode()) for i in range(3)]
    assert isinstance(new[0], SignalMessage)
    assert isinstance(old[0], SignalMessage)
    assert new[0].sender_ratchet_key != old[0].sender_ratchet_key
    assert new[0].counter == 0
    assert new[0].previous_counter == 3  # libsignal's value: the last index sent on the old chain
    for message, text in [(new[2], b"new 2"), (old[1], b"old 1"), (new[0], b"new 0")]:
        assert bob.decrypt(alice, message) == text
    for message, text in [(old[2], b"old 2"), (old[0], b"old 0"), (new[1], b"new 1")]:
        assert bob.decrypt(alice, message) == text


def test_duplicates_are_refused_and_change_nothing() -> None:
    alice, bob = established()
    message = alice.encrypt(bob, b"once")
    assert bob.decrypt(alice, message) == b"once"
    before = record_bytes(bob, alice)
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(alice, message)
    assert record_bytes(bob, alice) == before
    assert bob.decrypt(alice, alice.encrypt(bob, b"next")) == b"next"


def test_repeated_prekey_message_is_a_duplicate_and_consumes_prekeys_once() -> None:
    alice, bob = pair()
    alice.start(bob)
    message = alice.encrypt(bob, b"hello")
    assert bob.decrypt(alice, message) == b"hello"
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(alice, message)


@pytest.mark.parametrize("offset", [-1, -8, -9, -20, 3, 10])
def test_tampered_messages_are_refused_and_change_nothing(offset: int) -> None:
    alice, bob = established()
    message = alice.encrypt(bob, b"genuine")
    data = bytearray(message.serialize())
    data[offset] ^= 0x01
    before = record_bytes(bob, alice)
    with pytest.raises(InvalidMessageError):
        bob.decrypt(alice, SignalMessage.deserialize(bytes(data)))
    assert record_bytes(bob, alice) == before
    assert bob.decrypt(alice, message) == b"genuine"


def test_tampered_prekey_message_changes_nothing() -> None:
    alice, bob = pair()
    alice.start(bob)
    message = alice.encrypt(bob, b"genuine")
    assert isinstance(message, PreKeySignalMessage)
    forged = PreKeySignalMessage.deserialize(
        message.serialize()[:-1] + bytes((message.serialize()[-1] ^ 1,))
    )
    with pytest.raises(InvalidMessageError):
        bob.decrypt(alice, forged)
    assert record_bytes(bob, alice) is None
    assert len(bob.pre_keys) == 1
    assert bob.decrypt(alice, message) == b"genuine"


def test_unknown_prekeys_are_refused() -> None:
    alice, bob = pair()
    alice.start(bob)
    message = alice.encrypt(bob, b"hello")
    assert isinstance(message, PreKeySignalMessage)
    for change in (
        {"signed_pre_key_id": 99},
        {"kyber_pre_key_id": 99},
        {"pre_key_id": 99},
    ):
        fields = {
            "registration_id": message.registration_id,
            "pre_key_id": message.pre_key_id,
            "signed_pre_key_id": message.signed_pre_key_id,
            "kyber_pre_key_id": message.kyber_pre_key_id,
            "kyber_ciphertext": message.kyber_ciphertext,
            "base_key": message.base_key,
            "identity_key": message.identity_key,
            "message": message.message,
        }
        fields.update(change)
        with pytest.raises(InvalidPreKeyMessageError):
            bob.decrypt(alice, PreKeySignalMessage.create(**fields))  # type: ignore[arg-type]
    assert bob.decrypt(alice, message) == b"hello"


def jump_ahead(sender: Device, receiver: Device, steps: int) -> None:
    """Advances the sender's chain as if `steps` messages had been sent and lost."""
    record = sender.sessions.load_session(receiver.address)
    assert record is not None
    assert record.current is not None
    chain = record.current.sender_chain
    for _ in range(steps):
        chain.chain_key = next_chain_key(chain.chain_key)
    sender.sessions.store_session(receiver.address, record)


def test_forward_jump_limit() -> None:
    alice, bob = established()
    jump_ahead(alice, bob, MAX_FORWARD_JUMPS)
    at_limit = alice.encrypt(bob, b"at the limit")  # counter 25,000 on a new chain
    jump_ahead(alice, bob, MAX_FORWARD_JUMPS + 1)
    too_far = alice.encrypt(bob, b"too far")  # 25,001 past the next expected counter
    assert isinstance(at_limit, SignalMessage)
    assert isinstance(too_far, SignalMessage)
    assert at_limit.counter == MAX_FORWARD_JUMPS
    assert too_far.counter - (at_limit.counter + 1) == MAX_FORWARD_JUMPS + 1
    assert bob.decrypt(alice, at_limit) == b"at the limit"
    before = record_bytes(bob, alice)
    with pytest.raises(InvalidMessageError):
        bob.decrypt(alice, too_far)
    assert record_bytes(bob, alice) == before


def test_forward_jump_limit_not_applied_to_a_session_with_oneself() -> None:
    me = Device("me", 50)
    other = Device("me", 50, device_id=2)  # same seed: same identity, another device
    assert me.identity == other.identity
    me.start(other)
    assert other.decrypt(me, me.encrypt(other, b"hello myself")) == b"hello myself"
    jump_ahead(me, other, MAX_FORWARD_JUMPS + 1)
    assert other.decrypt(me, me.encrypt(other, b"far ahead")) == b"far ahead"


def test_skipped_keys_are_bounded() -> None:
    alice, bob = established()
    messages = [alice.encrypt(bob, b"%d" % i) for i in range(MAX_MESSAGE_KEYS + 2)]
    assert bob.decrypt(alice, messages[-1]) == b"%d" % (MAX_MESSAGE_KEYS + 1)
    record = bob.sessions.load_session(alice.address)
    assert record is not None
    assert record.current is not None
    chain = record.current.receiver_chain(messages[0].sender_ratchet_key)  # type: ignore[union-attr]
    assert chain is not None
    assert len(chain.message_keys) == MAX_MESSAGE_KEYS
    with pytest.raises(DuplicateMessageError):  # the oldest skipped key was evicted
        bob.decrypt(alice, messages[0])
    assert bob.decrypt(alice, messages[1]) == b"1"


def test_receiver_chains_are_bounded() -> None:
    alice, bob = established()
    late = alice.encrypt(bob, b"late")
    for step in range(MAX_RECEIVER_CHAINS + 1):
        bob.decrypt(alice, alice.encrypt(bob, b"a%d" % step))
        alice.decrypt(bob, bob.encrypt(alice, b"b%d" % step))
    record = bob.sessions.load_session(alice.address)
    assert record is not None
    assert record.current is not None
    assert len(record.current.receiver_chains) == MAX_RECEIVER_CHAINS
    before = record_bytes(bob, alice)
    with pytest.raises(InvalidMessageError):
        bob.decrypt(alice, late)
    assert record_bytes(bob, alice) == before


def test_no_session() -> None:
    alice, bob = pair()
    with pytest.raises(NoSessionError):
        alice.encrypt(bob, b"x")
    carol = Device("carol", 99)
    carol.start(bob)
    message = carol.encrypt(bob, b"hi")
    with pytest.raises(NoSessionError):
        alice.decrypt(bob, message.message if isinstance(message, PreKeySignalMessage) else message)


def test_unanswered_session_goes_stale_after_30_days() -> None:
    alice, bob = pair()
    alice.start(bob)
    alice.now += timedelta(days=30)
    assert isinstance(alice.encrypt(bob, b"day 30"), PreKeySignalMessage)
    alice.now += timedelta(seconds=1)
    with pytest.raises(NoSessionError):
        alice.encrypt(bob, b"day 30 and a second")
    record = alice.sessions.load_session(bob.address)
    assert record is not None
    assert not record.has_usable_sender_chain(alice.now)
    # an answered session never goes stale
    alice, bob = established(1)
    alice.now += timedelta(days=365)
    assert bob.decrypt(alice, alice.encrypt(bob, b"a year later")) == b"a year later"


def test_untrusted_identity_when_bundle_identity_changes() -> None:
    alice, bob = established()
    impostor = Device("bob", 77)
    with pytest.raises(UntrustedIdentityError):
        alice.start(impostor)
    # the impostor starts a session claiming bob's address
    impostor.start(alice)
    message = impostor.encrypt(alice, b"trust me")
    before = record_bytes(alice, bob)
    with pytest.raises(UntrustedIdentityError):
        alice.decrypt(impostor, message)
    assert record_bytes(alice, bob) == before
    assert bob.decrypt(alice, alice.encrypt(bob, b"still bob")) == b"still bob"


def test_encrypt_refuses_when_identity_is_no_longer_trusted() -> None:
    alice, bob = established()
    alice.identity_store.save_identity(bob.address, Device("x", 5).identity.public_key)
    before = record_bytes(alice, bob)
    with pytest.raises(UntrustedIdentityError):
        alice.encrypt(bob, b"x")
    assert record_bytes(alice, bob) == before


def test_bundle_with_bad_signature_is_refused_and_stores_nothing() -> None:
    alice, bob = pair()
    bundle = bob.bundle()
    forged = dataclasses.replace(bundle, kyber_pre_key_signature=bundle.signed_pre_key_signature)
    with pytest.raises(InvalidPreKeyBundleError):
        process_prekey_bundle(
            forged, bob.address, alice.sessions, alice.identity_store, now=alice.now, rng=alice.rng
        )
    assert record_bytes(alice, bob) is None
    assert alice.identity_store.get_identity(bob.address) is None


def test_simultaneous_initiation_settles_on_one_session() -> None:
    alice, bob = pair()
    alice.start(bob)
    bob.start(alice)
    to_bob = alice.encrypt(bob, b"from alice")
    to_alice = bob.encrypt(alice, b"from bob")
    assert bob.decrypt(alice, to_bob) == b"from alice"
    assert alice.decrypt(bob, to_alice) == b"from bob"
    for step in range(3):
        assert bob.decrypt(alice, alice.encrypt(bob, b"a%d" % step)) == b"a%d" % step
        assert alice.decrypt(bob, bob.encrypt(alice, b"b%d" % step)) == b"b%d" % step
    a = alice.sessions.load_session(bob.address)
    b = bob.sessions.load_session(alice.address)
    assert a is not None
    assert a.current is not None
    assert b is not None
    assert b.current is not None
    assert a.current.alice_base_key == b.current.alice_base_key  # the same session
    assert isinstance(alice.encrypt(bob, b"x"), SignalMessage)
    assert isinstance(bob.encrypt(alice, b"y"), SignalMessage)


def test_archived_sessions_are_bounded_and_still_decrypt() -> None:
    alice, bob = established()
    late = alice.encrypt(bob, b"from the first session")
    for _ in range(ARCHIVED_STATES_MAX_LENGTH + 3):
        bob.start(alice)
    record = bob.sessions.load_session(alice.address)
    assert record is not None
    assert len(record.archived) == ARCHIVED_STATES_MAX_LENGTH
    # the first session was pushed out; the most recent archived one still decrypts
    with pytest.raises(InvalidMessageError):
        bob.decrypt(alice, late)
    alice2, bob2 = established(3)
    late2 = alice2.encrypt(bob2, b"from an archived session")
    for _ in range(3):
        bob2.start(alice2)
    assert bob2.decrypt(alice2, late2) == b"from an archived session"
    record2 = bob2.sessions.load_session(alice2.address)
    assert record2 is not None
    assert record2.current is not None
    assert len(record2.archived) == 3
    assert record2.current.pending_pre_key is None  # the promoted old session is current


def test_sessions_survive_a_restart() -> None:
    alice, bob = established()
    data = record_bytes(alice, bob)
    assert data is not None
    restarted = Device("alice", 1)
    assert restarted.identity == alice.identity
    from kurir.crypto.session import SessionRecord

    restarted.sessions.store_session(bob.address, SessionRecord.deserialize(data))
    restarted.identity_store.save_identity(bob.address, bob.identity.public_key)
    assert bob.decrypt(restarted, restarted.encrypt(bob, b"after restart")) == b"after restart"
    assert restarted.decrypt(bob, bob.encrypt(restarted, b"welcome back")) == b"welcome back"


def test_last_resort_kem_key_serves_several_sessions() -> None:
    alice, bob = pair()
    carol = Device("carol", 33)
    bundle = bob.bundle(one_time=False, last_resort=True)
    for sender in (alice, carol):
        process_prekey_bundle(
            bundle,
            bob.address,
            sender.sessions,
            sender.identity_store,
            now=sender.now,
            rng=sender.rng,
        )
        assert bob.decrypt(sender, sender.encrypt(bob, b"hi")) == b"hi"
    assert bob.kyber_pre_keys.get_kyber_pre_key(KyberPreKeyId(bundle.kyber_pre_key_id)) is not None


def test_device_addresses_are_distinct_sessions() -> None:
    alice, bob = pair()
    bob2 = Device("bob", 2, device_id=2)
    alice.start(bob)
    alice.start(bob2)
    assert bob.decrypt(alice, alice.encrypt(bob, b"one")) == b"one"
    assert bob2.decrypt(alice, alice.encrypt(bob2, b"two")) == b"two"
    assert bob2.address == ProtocolAddress("bob", DeviceId(2))


def test_replayed_session_start_on_last_resort_key_is_refused() -> None:
    """With the session gone, a replayed first message would redo PQXDH on the last-resort KEM
    key with the same base key: the KEM store refuses it and nothing is written."""
    alice, bob = pair()
    bundle = bob.bundle(one_time=False, last_resort=True)
    process_prekey_bundle(
        bundle, bob.address, alice.sessions, alice.identity_store, now=alice.now, rng=alice.rng
    )
    first = alice.encrypt(bob, b"first")
    assert bob.decrypt(alice, first) == b"first"
    bob.sessions = type(bob.sessions)()  # the session is lost (reinstall, deletion)
    with pytest.raises(InvalidPreKeyMessageError):
        bob.decrypt(alice, first)
    assert record_bytes(bob, alice) is None
