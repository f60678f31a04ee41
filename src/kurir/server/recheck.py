"""Closing live connections whose credentials were revoked while this node was not listening.

This module owns :class:`CredentialRecheck`, the check a Redis router runs over its live
connections whenever its subscription is established again
(:meth:`kurir.server.routing_redis.RedisRouter.recheck_after_resubscribe`). Revocations
(re-registration, device removal) travel as pub/sub messages that Redis does not keep, so a
node that was cut off from Redis, or a Redis that restarted, loses them; the database still
tells: a removed device has no record, a re-registered one has a record with new
credentials. It knows nothing of Redis or WebSockets: connections that say which device they
authenticated as (:class:`Authenticated`) are checked, others are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from kurir.server.connections import Attachable
from kurir.server.services.accounts import AuthedDevice
from kurir.server.types import DeviceRef

__all__ = ["Authenticated", "CredentialRecheck", "RevocationSource"]


@runtime_checkable
class Authenticated(Protocol):
    """A connection that knows which device it authenticated as."""

    @property
    def device(self) -> AuthedDevice:
        """The device and the credentials it proved."""
        ...


class RevocationSource(Protocol):
    """Tells which authenticated devices lost their credentials
    (:meth:`kurir.server.services.accounts.AccountService.revoked`)."""

    async def revoked(self, devices: Sequence[AuthedDevice]) -> list[AuthedDevice]:
        """The devices among ``devices`` whose credentials are no longer valid."""
        ...


class CredentialRecheck:
    """A :class:`~kurir.server.routing_redis.LiveCheck` over the stored credentials.

    Args:
        accounts: Where current credentials are read.
    """

    def __init__(self, accounts: RevocationSource) -> None:
        self._accounts = accounts

    async def __call__(
        self, live: Sequence[tuple[DeviceRef, Attachable]]
    ) -> list[tuple[DeviceRef, Attachable]]:
        """The pairs of ``live`` whose device was removed or re-registered."""
        held: dict[DeviceRef, tuple[AuthedDevice, Attachable]] = {}
        for device, connection in live:
            if isinstance(connection, Authenticated) and connection.device.ref == device:
                held[device] = (connection.device, connection)
        if not held:
            return []
        revoked = await self._accounts.revoked([authed for authed, _ in held.values()])
        return [(d.ref, held[d.ref][1]) for d in revoked if d.ref in held]
