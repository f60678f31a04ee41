"""Routing between a device's mailbox and its live connection, wherever that connection is.

This module owns the :class:`Router` seam: what the transports and services need to reach a
device's connection (attach, detach, wake, revoke) and its lifecycle (``start``/``close``),
and :class:`LocalRouter`, the single-node implementation (the in-process
:class:`~kurir.server.connections.ConnectionRegistry`). The multi-node implementation over
Redis is :class:`kurir.server.routing_redis.RedisRouter`.

A router never holds a message: mailboxes are the durable truth, and a wake-up is only a hint
to read one. Losing a wake-up may delay delivery, never lose a message. The local router also
hands just-committed envelopes to its connections (``hand_off``, see
:class:`~kurir.server.services.messages.Courier`): a copy of what is already durable, which
a connection sends only if it follows what it sent, else it reads the mailbox.
"""

from __future__ import annotations

from typing import Protocol

from kurir.server.connections import Attachable, ConnectionRegistry
from kurir.server.types import AccountId, DeviceRef, Rng

__all__ = ["LocalRouter", "Router", "open_router", "router_healthy"]


class Router(Protocol):
    """Where each device's live connection is, and how to reach it.

    Implements the services' ``Notifier`` (``wake``) and ``Revoker`` (``revoke_*``) Protocols.
    All methods are synchronous and never block: a router that needs I/O queues it.
    """

    def attach(self, device: DeviceRef, connection: Attachable) -> None:
        """Make ``connection`` the device's connection; an older one, on any node, is closed
        with 4001."""
        ...

    def detach(self, device: DeviceRef, connection: Attachable) -> None:
        """Forget ``connection`` unless a newer one already replaced it."""
        ...

    def wake(self, device: DeviceRef) -> None:
        """The device's mailbox has new envelopes: wake its connection, wherever it is."""
        ...

    def revoke_account(self, account_id: AccountId) -> None:
        """Close every connection of the account, on every node (4003)."""
        ...

    def revoke_device(self, device: DeviceRef) -> None:
        """Close the device's connection, on whichever node holds it (4003)."""
        ...

    def __len__(self) -> int:
        """Live connections on this node."""
        ...

    async def start(self) -> None:
        """Begin background work (subscriptions, key refresh); called once at startup."""
        ...

    async def close(self) -> None:
        """Stop background work and release this node's registrations."""
        ...


class LocalRouter(ConnectionRegistry):
    """The single-node router: every connection is in this process, no I/O."""

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""


def open_router(redis_url: str | None, *, rng: Rng, node_id: str | None = None) -> Router:
    """The router for this node: over Redis when ``redis_url`` is set, else local.

    Call :meth:`Router.start` once the event loop runs (the application's startup).
    """
    if redis_url is None:
        return LocalRouter()
    from kurir.server.routing_redis import RedisRouter

    return RedisRouter(redis_url, rng=rng, node_id=node_id)


def router_healthy(router: Router) -> bool:
    """``False`` while a Redis router cannot reach Redis; always ``True`` for a local one."""
    return not getattr(router, "degraded", False)
