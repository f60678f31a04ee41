"""Push notifications: providers, content-free payloads, coalescing of bursts.

This module owns what a push says and when one is sent. A push is sent when a message was
enqueued for a device that has no live connection. Its payload carries **no message
content** and no sender address: only ``wake``, the conversation (the peer's opaque account
id, which the recipient's own client resolves) and the notification sound; a muted
conversation gives a silent push (``sound`` = ``none``, ``silent`` = true). A burst of
messages to one device gives one push: after a push the device is not pushed again for
``coalesce_ms`` (driven by the injected clock).

Providers: :class:`LogPushProvider` (development; keeps what it would send in memory and
logs one line without identifiers) and :class:`WebPushProvider` (RFC 8030 Web Push with
VAPID, RFC 8292, and an RFC 8291 encrypted payload, through ``pywebpush``). Adapters for
mobile push services implement the same :class:`PushProvider` Protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Protocol

from kurir.server.storage.metadata_records import PushSubscription
from kurir.server.types import Clock, DeviceRef

__all__ = [
    "LogPushProvider",
    "PushPayload",
    "PushProvider",
    "PushService",
    "WebPushProvider",
]

_log = logging.getLogger("kurir.server.push")
DEFAULT_COALESCE_MS: Final = 30_000
_MAX_REMEMBERED: Final = 100_000


@dataclass(frozen=True, slots=True)
class PushPayload:
    """What a push carries: a wake-up, which conversation, which sound. Never content."""

    conversation: str
    sound: str
    silent: bool
    kind: str = "wake"

    def to_json(self) -> bytes:
        """The payload as compact JSON (what the device receives)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()


class PushProvider(Protocol):
    """Delivers one push to one device."""

    async def push(
        self, device: DeviceRef, subscription: PushSubscription | None, payload: PushPayload
    ) -> None:
        """Send ``payload`` to ``device`` (through its ``subscription`` where one is needed)."""
        ...


class LogPushProvider:
    """Development provider: remembers pushes in memory and logs one line without ids."""

    def __init__(self) -> None:
        self.sent: list[tuple[DeviceRef, PushPayload]] = []

    async def push(
        self, device: DeviceRef, subscription: PushSubscription | None, payload: PushPayload
    ) -> None:
        """Record the push."""
        self.sent.append((device, payload))
        if len(self.sent) > _MAX_REMEMBERED:
            del self.sent[: len(self.sent) - _MAX_REMEMBERED]
        _log.info("push: wake-up (silent=%s, sound=%s)", payload.silent, payload.sound)


class WebPushProvider:
    """Standard Web Push (RFC 8030) with VAPID (RFC 8292) and an encrypted payload (RFC 8291).

    Args:
        vapid_private_key: The VAPID private key (PEM text or a path to a PEM file).
        subject: The VAPID ``sub`` claim, a ``mailto:`` or ``https:`` URL of the operator.
        ttl_s: How long the push service keeps an undelivered push.
    """

    def __init__(self, vapid_private_key: str, subject: str, *, ttl_s: int = 3600) -> None:
        if not subject.startswith(("mailto:", "https://")):
            raise ValueError("the VAPID subject must be a mailto: or https: URL")
        self._key_text = vapid_private_key
        self._key: object | None = None
        self._subject = subject
        self._ttl = ttl_s

    async def push(
        self, device: DeviceRef, subscription: PushSubscription | None, payload: PushPayload
    ) -> None:
        """Encrypt and post the payload to the device's push service (skipped without one)."""
        if subscription is None:
            return
        await asyncio.to_thread(self._post, subscription, payload.to_json())

    def _post(self, subscription: PushSubscription, data: bytes) -> None:
        from py_vapid import Vapid  # imported lazily: pywebpush pulls in requests
        from pywebpush import WebPushException, webpush

        if self._key is None:
            text = self._key_text
            if "-----BEGIN" not in text and Path(text).is_file():
                text = Path(text).read_text(encoding="ascii")
            self._key = Vapid.from_pem(text.encode()) if "-----BEGIN" in text else text
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        try:
            webpush(
                subscription_info=info,
                data=data,
                vapid_private_key=self._key,
                vapid_claims={"sub": self._subject},
                ttl=self._ttl,
            )
        except WebPushException as exc:
            status = getattr(exc.response, "status_code", None)
            _log.warning("web push refused by the push service (status %s)", status)


class PushService:
    """Decides when to push and sends through the provider.

    Args:
        provider: Where pushes go.
        clock: Time source (coalescing window).
        coalesce_ms: After a push, further pushes to the same device within this window are
            dropped (the first one already woke it).
    """

    def __init__(
        self, provider: PushProvider, *, clock: Clock, coalesce_ms: int = DEFAULT_COALESCE_MS
    ) -> None:
        self.provider = provider
        self._clock = clock
        self._coalesce = coalesce_ms
        self._last: dict[DeviceRef, int] = {}

    def should_push(self, device: DeviceRef) -> bool:
        """Whether a push to ``device`` now would not be coalesced into an earlier one."""
        last = self._last.get(device)
        return last is None or self._clock.now_ms() - last >= self._coalesce

    async def wake(
        self, device: DeviceRef, subscription: PushSubscription | None, payload: PushPayload
    ) -> bool:
        """Push unless coalesced; return whether a push was sent."""
        if not self.should_push(device):
            return False
        now = self._clock.now_ms()
        self._last[device] = now
        if len(self._last) > _MAX_REMEMBERED:
            cutoff = now - self._coalesce
            self._last = {d: t for d, t in self._last.items() if t > cutoff}
        try:
            await self.provider.push(device, subscription, payload)
        except Exception:
            _log.exception("push provider failed")
        return True
