"""The Web Push provider against a real local push endpoint: VAPID-signed, and the payload
is RFC 8291-encrypted to the subscriber's keys and decrypts to a content-free wake-up."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar
from uuid import UUID

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kurir.server.services.push import PushPayload, WebPushProvider
from kurir.server.storage.metadata_records import PushSubscription
from kurir.server.types import AccountId, DeviceId, DeviceRef


class _Endpoint(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.received.append((headers, self.rfile.read(length)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Endpoint.received = []
    server = HTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push/abc"
    server.shutdown()
    server.server_close()
    thread.join()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_payload_is_encrypted_and_vapid_signed(endpoint: str) -> None:
    subscriber = ec.generate_private_key(ec.SECP256R1())
    public = subscriber.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth_secret = b"0123456789abcdef"
    vapid = ec.generate_private_key(ec.SECP256R1())
    pem = vapid.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    provider = WebPushProvider(pem, "mailto:ops@kurir.example")
    account = AccountId(UUID(int=7))
    subscription = PushSubscription(
        account, DeviceId(1), endpoint, _b64(public), _b64(auth_secret), 1
    )
    payload = PushPayload(conversation=str(UUID(int=8)), sound="kentongan", silent=False)
    await provider.push(DeviceRef(account, DeviceId(1)), subscription, payload)
    ((headers, body),) = _Endpoint.received
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["authorization"].startswith("vapid t=")
    assert b"kentongan" not in body  # encrypted on the wire
    plain = http_ece.decrypt(body, private_key=subscriber, auth_secret=auth_secret)
    assert json.loads(plain) == {
        "conversation": str(UUID(int=8)),
        "kind": "wake",
        "silent": False,
        "sound": "kentongan",
    }


async def test_no_subscription_no_request(endpoint: str) -> None:
    provider = WebPushProvider("unused", "https://kurir.example")
    ref = DeviceRef(AccountId(UUID(int=1)), DeviceId(1))
    await provider.push(ref, None, PushPayload("", "none", True))
    assert _Endpoint.received == []
    with pytest.raises(ValueError, match="VAPID subject"):
        WebPushProvider("unused", "ops@kurir.example")
