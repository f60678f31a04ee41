"""Tests of kurir.client.content: round trips, padding, versioning, malformed input."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kurir.client.content import (
    CONTENT_VERSION,
    MAX_TEXT_CHARS,
    PADDING_BLOCK,
    Body,
    Content,
    Delete,
    Edit,
    MessageRef,
    Reaction,
    Receipt,
    ReceiptKind,
    SentTranscript,
    Text,
    Typing,
    decode_content,
    encode_content,
    pad,
    unpad,
)
from kurir.client.errors import PeerContentError

REF = MessageRef(author="6f1c4a1e-0000-4000-8000-000000000001", message_id=bytes(range(16)))

BODIES: list[Body] = [
    Text("hello"),
    Text("reply", reply_to=REF),
    Reaction(REF, "👍"),
    Reaction(REF, "👍", remove=True),
    Edit(REF, "fixed"),
    Delete(REF),
    Receipt(ReceiptKind.READ, [REF.message_id]),
    Typing(started=True),
    SentTranscript("instagram:@rina", REF.author, REF.message_id, Text("hi")),
]


@pytest.mark.parametrize("body", BODIES)
def test_every_kind_round_trips(body: Body) -> None:
    content = Content(body=body, sent_at=1_700_000_000_000)
    data = encode_content(content)
    assert len(data) % PADDING_BLOCK == 0
    assert decode_content(data) == content


@given(st.binary(max_size=1000))
def test_pad_unpad_round_trip(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) % PADDING_BLOCK == 0
    assert len(padded) > len(data)
    assert unpad(padded) == data


def test_short_texts_have_equal_length() -> None:
    a = encode_content(Content(Text("a"), sent_at=1))
    b = encode_content(Content(Text("a much longer text, still short"), sent_at=1))
    assert len(a) == len(b) == PADDING_BLOCK


def test_missing_padding_marker_is_refused() -> None:
    with pytest.raises(PeerContentError, match="padding"):
        unpad(b"abc" + bytes(10))
    with pytest.raises(PeerContentError, match="padding"):
        unpad(bytes(PADDING_BLOCK))


def test_newer_version_is_refused() -> None:
    raw = msgspec.msgpack.encode(
        {"v": CONTENT_VERSION + 1, "sent_at": 1, "body": {"kind": "text", "text": "x"}}
    )
    with pytest.raises(PeerContentError, match="newer"):
        decode_content(pad(raw))


def test_unknown_kind_is_refused_clearly() -> None:
    raw = msgspec.msgpack.encode({"v": 1, "sent_at": 1, "body": {"kind": "attachment"}})
    with pytest.raises(PeerContentError, match="not understood"):
        decode_content(pad(raw))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = msgspec.msgpack.encode(
        {"v": 1, "sent_at": 5, "later": 1, "body": {"kind": "text", "text": "x", "extra": [1]}}
    )
    assert decode_content(pad(raw)) == Content(Text("x"), sent_at=5)


def test_garbage_is_refused() -> None:
    with pytest.raises(PeerContentError, match="malformed"):
        decode_content(pad(b"\xc1\xc1\xc1"))


def test_overlong_text_is_refused_before_encryption() -> None:
    with pytest.raises(ValueError, match="longer"):
        encode_content(Content(Text("x" * (MAX_TEXT_CHARS + 1)), sent_at=1))


def test_a_resend_carries_its_first_id() -> None:
    content = Content(Text("lagi"), sent_at=3, resend_of=b"r" * 16)
    assert decode_content(encode_content(content)).resend_of == b"r" * 16


@given(st.binary(max_size=400))
def test_decoding_arbitrary_bytes_fails_only_with_peer_content_error(data: bytes) -> None:
    with contextlib.suppress(PeerContentError):
        decode_content(data)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=5)
        | st.binary(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["v", "sent_at", "body", "kind", "text", "target", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_decoding_arbitrary_structures_fails_only_with_peer_content_error(value: object) -> None:
    with contextlib.suppress(PeerContentError):
        decode_content(pad(msgspec.msgpack.encode(value)))
