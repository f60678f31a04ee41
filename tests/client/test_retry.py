"""Tests of kurir.client.retry: libsignal's DecryptionErrorMessage in a PlaintextContent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from client.peers import Peer, send
from kurir.client.retry import (
    RetryRequest,
    decode_retry_request,
    encode_retry_request,
    retry_request_for,
)
from kurir.crypto.messages import PreKeySignalMessage, SignalMessage
from kurir.wire.frames import EnvelopeType

KEY = b"\x05" + bytes(range(32))


def test_the_bytes_are_libsignals_plaintext_content() -> None:
    body = encode_retry_request(RetryRequest(timestamp=300, device=2, ratchet_key=KEY))
    inner = b"\x0a\x21" + KEY + b"\x10\xac\x02" + b"\x18\x02"  # fields 1, 2 (varint 300), 3
    assert body == b"\xc0" + b"\x42" + bytes([len(inner)]) + inner + b"\x80"


def test_round_trip_with_and_without_a_ratchet_key() -> None:
    for request in [
        RetryRequest(timestamp=1_700_000_000_123, device=1, ratchet_key=KEY),
        RetryRequest(timestamp=1, device=7),
    ]:
        assert decode_retry_request(encode_retry_request(request)) == request


def test_malformed_requests_are_refused() -> None:
    good = encode_retry_request(RetryRequest(timestamp=5, device=1))
    for bad in [
        b"",
        b"\xc0",
        good[1:],  # no context byte
        good[:-1],  # no padding boundary
        b"\xc0\x42\x00\x80",  # no fields
        encode_retry_request(RetryRequest(timestamp=5, device=0)),
        encode_retry_request(RetryRequest(timestamp=5, device=1, ratchet_key=b"short")),
        b"\xc0\xff\xff\xff\x80",
    ]:
        assert decode_retry_request(bad) is None
    assert decode_retry_request(good + b"\x00\x00") is not None  # zero padding is allowed


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_raises(data: bytes) -> None:
    decode_retry_request(data)
    decode_retry_request(b"\xc0" + data + b"\x80")


async def test_the_request_names_the_failed_messages_ratchet_key() -> None:
    alice, bob = Peer(20, "x:1"), Peer(21, "x:2")
    first = send(alice, bob, "a", 1)
    assert first.type == EnvelopeType.PREKEY_BUNDLE
    request = retry_request_for(first.type, first.body, timestamp=first.timestamp, device=1)
    prekey_message = PreKeySignalMessage.deserialize(first.body)
    assert request.ratchet_key == prekey_message.message.sender_ratchet_key.serialize()
    assert (request.timestamp, request.device) == (first.timestamp, 1)
    await bob.incoming.handle(first)
    await alice.incoming.handle(send(bob, alice, "b", 1))
    normal = send(alice, bob, "c", 2)
    assert normal.type == EnvelopeType.CIPHERTEXT
    request = retry_request_for(normal.type, normal.body, timestamp=9, device=1)
    assert (
        request.ratchet_key == SignalMessage.deserialize(normal.body).sender_ratchet_key.serialize()
    )
    assert retry_request_for(normal.type, b"garbage", timestamp=9, device=1).ratchet_key is None
