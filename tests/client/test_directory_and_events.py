"""Tests of kurir.client.directory (with a mock HTTP transport) and kurir.client.events."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx
import pytest

from kurir.client.content import Content, MessageRef, Reaction, encode_content, pad
from kurir.client.directory import Directory
from kurir.client.errors import InvalidAddressError, UnknownAddressError
from kurir.client.events import (
    DeliveryEvent,
    MessageEvent,
    UndecryptableEvent,
    UnreadableEvent,
    event_from_inbox,
)
from kurir.client.store import ClientStore, Contact, InboxItem, InboxKind
from kurir.client.transport import DeviceAuth, HttpApi

ACCOUNT = uuid4()
APPS = {
    "apps": [
        {
            "id": "whatsapp",
            "display_name": "WhatsApp",
            "identifier_kind": "phone",
            "colour": "#25D366",
        },
        {
            "id": "instagram",
            "display_name": "Instagram",
            "identifier_kind": "handle",
            "colour": "#E1306C",
        },
    ]
}


def _directory() -> tuple[Directory, ClientStore, list[str]]:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/apps":
            return httpx.Response(200, json=APPS)
        addresses = json.loads(request.content)["addresses"]
        asked.extend(addresses)
        results = [
            {"address": a, "account_id": str(ACCOUNT), "devices": [2, 1]}
            for a in addresses
            if a == "whatsapp:+6281234567890"
        ]
        return httpx.Response(200, json={"results": results})

    store = ClientStore.in_memory(lambda: 1)
    http = HttpApi(
        "http://s", DeviceAuth(uuid4(), 1, "A" * 22), transport=httpx.MockTransport(handler)
    )
    return Directory(store, http), store, asked


async def test_lookup_normalises_resolves_and_caches() -> None:
    directory, store, asked = _directory()
    contact = await directory.lookup("whatsapp:+62 812-3456-7890")
    assert contact == Contact("whatsapp:+6281234567890", ACCOUNT, (1, 2))
    assert await directory.lookup("whatsapp:+6281234567890") == contact
    assert asked == ["whatsapp:+6281234567890"]  # the second came from the cache
    assert store.contact_by_account(ACCOUNT) == contact
    await directory.lookup("whatsapp:+6281234567890", refresh=True)
    assert len(asked) == 2


async def test_bad_and_unknown_addresses_are_told_apart() -> None:
    directory, _, asked = _directory()
    with pytest.raises(InvalidAddressError, match="app:identifier"):
        await directory.lookup("rina")
    with pytest.raises(InvalidAddressError, match="unknown app"):
        await directory.lookup("telegram:@rina")
    with pytest.raises(InvalidAddressError, match="handle"):
        await directory.lookup("instagram:rina!")
    assert asked == []  # nothing malformed went to the server
    with pytest.raises(UnknownAddressError, match="instagram:@rina"):
        await directory.lookup("instagram:@Rina")


def _item(kind: str, content: bytes | None) -> InboxItem:
    return InboxItem(
        id=7,
        kind=kind,
        source=ACCOUNT,
        source_device=1,
        source_address="whatsapp:+6281234567890",
        message_id=b"m" * 16,
        timestamp=5,
        server_timestamp=6,
        content=content,
    )


def test_every_inbox_kind_becomes_its_event() -> None:
    reaction = Reaction(MessageRef(str(ACCOUNT), b"x" * 16), "🎉")
    message = event_from_inbox(
        _item(InboxKind.MESSAGE, encode_content(Content(reaction, sent_at=4)))
    )
    assert isinstance(message, MessageEvent)
    assert (message.body, message.sent_at, message.sender) == (
        reaction,
        4,
        "whatsapp:+6281234567890",
    )
    receipt = event_from_inbox(_item(InboxKind.DELIVERY, None))
    assert isinstance(receipt, DeliveryEvent)
    assert receipt.recipient_account == ACCOUNT
    failed = event_from_inbox(_item(InboxKind.UNDECRYPTABLE, b"cannot decrypt: X"))
    assert isinstance(failed, UndecryptableEvent)
    assert failed.reason == "cannot decrypt: X"
    unreadable = event_from_inbox(_item(InboxKind.MESSAGE, pad(b"\x93garbage")))
    assert isinstance(unreadable, UnreadableEvent)
