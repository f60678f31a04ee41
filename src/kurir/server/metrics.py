"""Per-node operational metrics in the Prometheus text format (``GET /metrics``).

This module owns what a node counts about itself and how it is exposed: open connections,
``send`` frames accepted, envelope copies queued, envelopes delivered and acknowledged, and
whether Redis is reachable. Every series is a node-wide aggregate: no label, value or name
carries an account, device, address or message id, so a scrape reveals traffic volume, never
who talks to whom.

Access: with a metrics token configured, ``/metrics`` requires ``Authorization: Bearer
<token>``; without one it answers only loopback clients (a scraper on the same host, or an
operator's SSH tunnel). Volumes over time are still metadata, so a deployment that exposes the
server publicly sets a token (docs/deployment.md).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from kurir.server.services.messages import MessageService, Notifier
from kurir.server.services.policy import SendHooks
from kurir.server.storage.protocols import AccountStore, MailboxStore
from kurir.server.types import Clock

__all__ = ["MessageCounts", "MeteredMessageService", "Metrics", "metrics_endpoint"]


_COUNT_HELP: Final = {
    "accepted": "send frames accepted by this node (durably committed, answered ok).",
    "queued": "Envelope copies this node committed to recipient mailboxes (one per device).",
    "delivered": "Envelopes read from mailboxes and written to connections on this node.",
    "acknowledged": "Envelope seqs acknowledged by devices connected to this node.",
}


class MessageCounts(Collector):
    """The message path's counters: plain integers bumped on the event loop, read at scrape
    time (a ``prometheus_client.Counter`` takes a lock on every increment)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.queued = 0
        self.delivered = 0
        self.acknowledged = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One ``kurir_envelopes_<name>_total`` counter per count."""
        for name, text in _COUNT_HELP.items():
            yield CounterMetricFamily(f"kurir_envelopes_{name}", text, value=getattr(self, name))


class Metrics:
    """The counters and gauges of one node, in their own registry (no process globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "kurir_connections", "Open device WebSockets on this node.", registry=self.registry
        )
        self.redis_up = Gauge(
            "kurir_redis_up",
            "1 when cross-node routing reaches Redis (or runs single-node), 0 while degraded.",
            registry=self.registry,
        )
        self.counts = MessageCounts()
        self.registry.register(self.counts)

    def watch(self, *, connections: Callable[[], int], redis_up: Callable[[], bool]) -> None:
        """Read the two gauges from the running node at scrape time."""
        self.connections.set_function(lambda: float(connections()))
        self.redis_up.set_function(lambda: 1.0 if redis_up() else 0.0)

    def render(self) -> bytes:
        """The current values in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class MeteredMessageService(MessageService):
    """:class:`MessageService` that counts what it accepts, delivers and sees acknowledged.

    The service bumps :class:`MessageCounts` itself (as its ``tally``): wrapping each method
    in a counting coroutine cost a coroutine per ``send`` and per ``ack`` on the message path.

    Args:
        metrics: Where to count; every other argument is :class:`MessageService`'s.
    """

    def __init__(
        self,
        accounts: AccountStore,
        mailboxes: MailboxStore,
        notifier: Notifier,
        *,
        clock: Clock,
        mailbox_cap: int,
        envelope_ttl_ms: int,
        metrics: Metrics,
        hooks: SendHooks | None = None,
    ) -> None:
        super().__init__(
            accounts,
            mailboxes,
            notifier,
            clock=clock,
            mailbox_cap=mailbox_cap,
            envelope_ttl_ms=envelope_ttl_ms,
            hooks=hooks,
            tally=metrics.counts,
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return request.client is not None and _loopback(request.client.host)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def metrics_endpoint(
    metrics: Metrics, token: str | None
) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` handler (bearer ``token``, or loopback only when ``None``)."""

    async def handler(request: Request) -> Response:
        if not _authorised(request, token):
            return Response(
                b'{"error": {"code": "forbidden", "message": "metrics need the metrics token"}}',
                status_code=403,
                media_type="application/json",
            )
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return handler
