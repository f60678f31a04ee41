"""The running server's wired services, as the transports see them.

This module owns the :class:`Services` bundle that the composition root builds at startup
and the transports read from the Starlette application state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import HTTPConnection

from kurir.server.routing import Router
from kurir.server.services.accounts import AccountService
from kurir.server.services.groups import GroupService
from kurir.server.services.keys import KeyService
from kurir.server.services.messages import MessageService
from kurir.server.types import Clock

__all__ = ["Services", "services_of"]


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request handler may use."""

    accounts: AccountService
    keys: KeyService
    messages: MessageService
    connections: Router
    clock: Clock
    groups: GroupService | None = None


def services_of(conn: HTTPConnection) -> Services:
    """Return the services of the application serving ``conn``."""
    return cast(Services, conn.app.state.services)


def client_host(conn: HTTPConnection) -> str:
    """The peer's host, used only as an in-memory rate-limit key (never logged)."""
    return conn.client.host if conn.client is not None else "unknown"
