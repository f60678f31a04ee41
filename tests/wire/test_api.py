"""HTTP JSON bodies: validation and base64 handling."""

from __future__ import annotations

import base64

import pytest

from kurir.wire.api import KeyUpload, PreKey, RegistrationRequest, decode_json, encode_json
from kurir.wire.errors import ErrorCode, WireError


def test_key_upload_bytes_travel_as_base64() -> None:
    upload = KeyUpload(one_time_prekeys=[PreKey(key_id=1, public_key=b"\x05" + bytes(32))])
    data = encode_json(upload)
    assert base64.b64encode(b"\x05" + bytes(32)) in data
    assert b"identity_key" not in data
    assert decode_json(data, KeyUpload) == upload


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"address": "whatsapp:+6281234567890"}',
        b'{"address": "x:y", "code": "1", "password": "' + b"A" * 22 + b'", "registration_id": 0}',
    ],
)
def test_bad_bodies_refused(body: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode_json(body, RegistrationRequest)
    assert info.value.code is ErrorCode.INVALID_REQUEST


def test_wrong_key_length_refused() -> None:
    body = b'{"identity_key": "' + base64.b64encode(bytes(32)) + b'"}'
    with pytest.raises(WireError, match="identity_key"):
        decode_json(body, KeyUpload)
