"""Addresses: parsing, normalisation and refusal of nonsense."""

from __future__ import annotations

import pytest

from kurir.wire.address import (
    Address,
    IdentifierKind,
    normalize_identifier,
    parse_address,
    split_address,
)
from kurir.wire.errors import AddressError, ErrorCode

APPS = {
    "whatsapp": IdentifierKind.PHONE,
    "messenger": IdentifierKind.ACCOUNT,
    "instagram": IdentifierKind.HANDLE,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whatsapp:+6281234567890", "whatsapp:+6281234567890"),
        ("whatsapp:+62 812-3456-7890", "whatsapp:+6281234567890"),
        ("whatsapp:+1 (202) 555.0100", "whatsapp:+12025550100"),
        ("messenger:1000423", "messenger:1000423"),
        ("instagram:@Rina", "instagram:@rina"),
        ("instagram:@a.b_c9", "instagram:@a.b_c9"),
    ],
)
def test_parse_normalises(text: str, expected: str) -> None:
    address = parse_address(text, APPS)
    assert str(address) == expected
    assert parse_address(expected, APPS) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "whatsapp",
        "whatsapp:",
        "whatsapp:6281234567890",
        "whatsapp:+62abc",
        "whatsapp:+1",
        "messenger:0123",
        "messenger:123456789012345678901",
        "messenger:12a",
        "instagram:rina",
        "instagram:@",
        "instagram:@" + "a" * 31,
        "instagram:@ri na",
        "Whatsapp:+6281234567890",
        "whatsapp:+62" + "1" * 200,
    ],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text, APPS)
    assert info.value.code is ErrorCode.INVALID_ADDRESS


def test_unknown_app_has_its_own_code() -> None:
    with pytest.raises(AddressError) as info:
        parse_address("telegram:@rina", APPS)
    assert info.value.code is ErrorCode.UNKNOWN_APP


def test_split_keeps_colons_in_identifier() -> None:
    assert split_address("x:a:b") == ("x", "a:b")


def test_normalize_identifier_directly() -> None:
    assert normalize_identifier(IdentifierKind.HANDLE, "@ABC") == "@abc"
    assert Address("messenger", "1") == parse_address("messenger:1", APPS)
