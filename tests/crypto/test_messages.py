"""Tests of SignalMessage and PreKeySignalMessage: libsignal's wire format and the MAC."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kurir.crypto import protos
from kurir.crypto.curve import KeyPair, PublicKey
from kurir.crypto.errors import (
    InvalidMessageError,
    LegacyMessageError,
    SignalProtocolError,
    UnrecognizedVersionError,
)
from kurir.crypto.messages import (
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
    deserialize_ciphertext,
)

RNG = random.Random(0).randbytes
SENDER = KeyPair.generate(RNG).public_key
RECEIVER = KeyPair.generate(RNG).public_key
RATCHET = KeyPair.generate(RNG).public_key
MAC_KEY = bytes(range(32))


def signal_message(pq_ratchet: bytes = b"") -> SignalMessage:
    return SignalMessage.create(
        mac_key=MAC_KEY,
        sender_ratchet_key=RATCHET,
        counter=7,
        previous_counter=3,
        ciphertext=b"\x01" * 32,
        sender_identity=SENDER,
        receiver_identity=RECEIVER,
        pq_ratchet=pq_ratchet,
    )


def test_signal_message_layout_and_mac() -> None:
    message = signal_message()
    data = message.serialize()
    assert data[0] == 0x44
    # protobuf in tag order: ratchet_key, counter, previous_counter, ciphertext; no pq_ratchet
    assert data[1:-8] == (
        b"\x0a\x21" + RATCHET.serialize() + b"\x10\x07\x18\x03" + b"\x22\x20" + b"\x01" * 32
    )
    expected = hmac.new(
        MAC_KEY, SENDER.serialize() + RECEIVER.serialize() + data[:-8], hashlib.sha256
    ).digest()[:8]
    assert data[-8:] == expected
    assert message.verify_mac(SENDER, RECEIVER, MAC_KEY)
    assert not message.verify_mac(RECEIVER, SENDER, MAC_KEY)
    assert not message.verify_mac(SENDER, RECEIVER, bytes(32))


def test_signal_message_round_trip_carries_pq_ratchet_under_the_mac() -> None:
    message = signal_message(pq_ratchet=b"\x01\x01\x00\x01\x00")
    parsed = SignalMessage.deserialize(message.serialize())
    assert parsed == message
    assert parsed.pq_ratchet == b"\x01\x01\x00\x01\x00"
    assert parsed.message_type is CiphertextMessageType.WHISPER
    assert parsed.verify_mac(SENDER, RECEIVER, MAC_KEY)
    # changing the SPQR bytes breaks the MAC
    data = bytearray(message.serialize())
    index = bytes(data).index(b"\x01\x01\x00\x01\x00")
    data[index + 2] ^= 1
    assert not SignalMessage.deserialize(bytes(data)).verify_mac(SENDER, RECEIVER, MAC_KEY)


@pytest.mark.parametrize(
    ("first", "error"),
    [(0x33, LegacyMessageError), (0x24, LegacyMessageError), (0x54, UnrecognizedVersionError)],
)
def test_versions_other_than_4_are_refused(first: int, error: type[Exception]) -> None:
    data = bytearray(signal_message().serialize())
    data[0] = first
    with pytest.raises(error):
        SignalMessage.deserialize(bytes(data))


def test_signal_message_requires_its_fields() -> None:
    with pytest.raises(InvalidMessageError):
        SignalMessage.deserialize(b"\x44" + bytes(7))
    with pytest.raises(InvalidMessageError):  # no ratchet key, no ciphertext
        SignalMessage.deserialize(b"\x44\x10\x01" + bytes(8))
    with pytest.raises(InvalidMessageError):  # a ratchet key of the wrong type
        SignalMessage.deserialize(b"\x44\x0a\x02\x06\x00\x10\x01\x22\x00" + bytes(8))


def prekey_message(pre_key_id: int | None = 5) -> PreKeySignalMessage:
    return PreKeySignalMessage.create(
        registration_id=1234,
        pre_key_id=pre_key_id,
        signed_pre_key_id=6,
        kyber_pre_key_id=7,
        kyber_ciphertext=b"\x0a" + bytes(1568),
        base_key=RATCHET,
        identity_key=SENDER,
        message=signal_message(),
    )


@pytest.mark.parametrize("pre_key_id", [5, None])
def test_prekey_message_round_trip(pre_key_id: int | None) -> None:
    message = prekey_message(pre_key_id)
    data = message.serialize()
    assert data[0] == 0x44
    parsed = PreKeySignalMessage.deserialize(data)
    assert parsed == message
    assert parsed.pre_key_id == pre_key_id
    assert parsed.message_type is CiphertextMessageType.PREKEY
    assert deserialize_ciphertext(3, data) == message
    assert deserialize_ciphertext(2, message.message.serialize()) == message.message


def test_prekey_message_without_kem_part_is_refused() -> None:
    message = prekey_message()
    # drop fields 7 and 8 (kyber id and ciphertext), which are written last
    cut = message.serialize().index(b"\x38\x07")
    with pytest.raises(InvalidMessageError):
        PreKeySignalMessage.deserialize(message.serialize()[:cut])


def test_unknown_ciphertext_type_is_refused() -> None:
    with pytest.raises(InvalidMessageError):
        deserialize_ciphertext(7, signal_message().serialize())


def test_counter_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidMessageError):
        SignalMessage.create(
            mac_key=MAC_KEY,
            sender_ratchet_key=RATCHET,
            counter=1 << 32,
            previous_counter=0,
            ciphertext=b"",
            sender_identity=SENDER,
            receiver_identity=RECEIVER,
        )


@given(st.binary(max_size=200), st.sampled_from([2, 3]))
def test_parsers_raise_only_protocol_errors(data: bytes, message_type: int) -> None:
    with contextlib.suppress(SignalProtocolError):
        deserialize_ciphertext(message_type, data)


@given(st.binary(min_size=1, max_size=40))
def test_parsers_on_valid_prefix_raise_only_protocol_errors(tail: bytes) -> None:
    for data in (b"\x44" + tail, signal_message().serialize()[:20] + tail):
        for message_type in (2, 3):
            with contextlib.suppress(SignalProtocolError):
                deserialize_ciphertext(message_type, data)


def test_identity_key_must_be_a_curve_key() -> None:
    data = prekey_message().serialize().replace(SENDER.serialize(), b"\x06" + SENDER.key)
    with pytest.raises(InvalidMessageError):
        PreKeySignalMessage.deserialize(data)
    assert PublicKey.deserialize(SENDER.serialize()) == SENDER


@pytest.mark.parametrize(
    "tail",
    [
        b"\xff",  # truncated tag
        b"\x80",  # truncated varint
        b"\x0a\x05ab",  # bytes shorter than their length
        b"\x00\x01",  # field number 0
        b"\x0b",  # unterminated group
        b"\x0b\x0c",  # a group, even terminated (libsignal's messages have none)
        b"\x29\x00",  # truncated fixed64
        b"\x09" + bytes(8),  # known field 1 (pre_key_id, a varint) as fixed64: prost refuses
        b"\x08" + b"\xff" * 10 + b"\x01",  # varint longer than 10 bytes
    ],
    ids=[
        "truncated-tag",
        "truncated-varint",
        "short-bytes",
        "field-0",
        "open-group",
        "group",
        "short-fixed64",
        "wrong-wire-type",
        "long-varint",
    ],
)
def test_malformed_protobuf_is_refused_as_prost_refuses_it(tail: bytes) -> None:
    data = prekey_message().serialize() + tail
    with pytest.raises(InvalidMessageError):
        PreKeySignalMessage.deserialize(data)
    with pytest.raises(ValueError):  # noqa: PT011 (protos.parse's documented error)
        protos.parse(protos.PreKeySignalMessageProto, data[1:])


def test_unknown_fields_are_skipped_as_prost_skips_them() -> None:
    # a field number libsignal does not know, of any non-group wire type, is ignored
    data = prekey_message().serialize()
    for tail in (
        b"\xf8\x01\x07",
        b"\xfa\x01\x02ab",
        b"\xf9\x01" + bytes(8),
        b"\xfd\x01" + bytes(4),
    ):
        parsed = PreKeySignalMessage.deserialize(data + tail)
        assert parsed.base_key == prekey_message().base_key
