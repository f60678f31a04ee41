"""The Basic credential header and password encoding."""

from __future__ import annotations

import base64
from uuid import UUID

import pytest

from kurir.wire.auth import (
    Credentials,
    decode_password,
    encode_basic_auth,
    encode_password,
    parse_basic_auth,
)
from kurir.wire.errors import ErrorCode, WireError

ACCOUNT = UUID("0b5c7c2e-8f3a-4d6b-9a51-3f1f1b2c4d5e")


def test_round_trip() -> None:
    password = encode_password(bytes(range(16)))
    header = encode_basic_auth(ACCOUNT, 3, password)
    assert parse_basic_auth(header) == Credentials(ACCOUNT, 3, password)
    assert decode_password(password) == bytes(range(16))


def test_password_not_in_repr() -> None:
    assert "secret" not in repr(Credentials(ACCOUNT, 1, "secret"))


def _basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!!",
        _basic(f"{ACCOUNT}:pw"),
        _basic(f"{ACCOUNT}.1"),
        _basic(f"{ACCOUNT}.0:pw"),
        _basic(f"{ACCOUNT}.x:pw"),
        _basic(f"{ACCOUNT}.99999999999:pw"),
        _basic("not-a-uuid.1:pw"),
        _basic(f"{ACCOUNT.hex}.1:pw"),
        "Basic " + "A" * 600,
    ],
)
def test_malformed_headers_refused(header: str) -> None:
    with pytest.raises(WireError) as info:
        parse_basic_auth(header)
    assert info.value.code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("text", ["", "a+b/c", "AAAA", "A" * 100, "ab$cdefghijklmnopqrstuv"])
def test_bad_passwords_refused(text: str) -> None:
    with pytest.raises(WireError):
        decode_password(text)


def test_encode_password_checks_length() -> None:
    with pytest.raises(ValueError, match="16 to 64"):
        encode_password(b"short")
