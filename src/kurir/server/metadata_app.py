"""Wiring of the metadata features (issue 5): stores, services and the send-path hooks.

This module owns building :class:`MetadataServices` from an opened storage engine and the
configuration, and finding them again from a request (:func:`metadata_of`). The composition
root (:mod:`kurir.server.app`) calls :func:`build_metadata` once at startup. Engines without
metadata tables yet (PostgreSQL until it implements migration 0004) get the in-memory store,
announced by a WARNING: their blocks and settings do not survive a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from starlette.requests import HTTPConnection

from kurir.server.config import AppCatalogue, ServerConfig
from kurir.server.services.contacts import ContactService
from kurir.server.services.conversations import ConversationService, SettingsListener
from kurir.server.services.delivery import MetadataSendHooks, SettingsSync, presence_of
from kurir.server.services.policy import PolicyService
from kurir.server.services.profiles import ProfileService
from kurir.server.services.push import (
    LogPushProvider,
    PushProvider,
    PushService,
    WebPushProvider,
)
from kurir.server.services.report import ReportService
from kurir.server.shared_limits import Limiter
from kurir.server.storage.metadata_memory import MemoryMetadataStore
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.metadata_records import Reachability
from kurir.server.storage.protocols import Storage
from kurir.server.types import Clock

__all__ = ["MetadataServices", "build_metadata", "metadata_of", "push_provider_for"]

_log = logging.getLogger("kurir.server")


@dataclass(frozen=True, slots=True)
class MetadataServices:
    """The metadata services of a running server."""

    store: MetadataStore
    policy: PolicyService
    conversations: ConversationService
    contacts: ContactService
    profiles: ProfileService
    push: PushService
    report: ReportService
    hooks: MetadataSendHooks


def build_metadata(
    storage: Storage,
    catalogue: AppCatalogue,
    router: object,
    *,
    clock: Clock,
    default_reachability: Reachability = Reachability.CONTACTS,
    push_provider: PushProvider | None = None,
    listener: SettingsListener | None = None,
    contacts_limiter: Limiter | None = None,
) -> MetadataServices:
    """Build the metadata services over an opened engine's stores.

    Args:
        storage: The engine's stores (``storage.metadata`` if the engine has one).
        catalogue: The app catalogue.
        router: The connection router (which devices are online, for push).
        clock: Time source.
        default_reachability: Reachability of accounts that never chose one.
        push_provider: Where pushes go; default: the development log provider.
        listener: Told when an account's synced settings changed; default: a ``sync``
            push to the account's other devices.
        contacts_limiter: The address-book upload limiter (shared through Redis on several
            nodes); default: node-local.
    """
    store: MetadataStore | None = getattr(storage, "metadata", None)
    if store is None:
        _log.warning("metadata: this storage engine has no metadata tables; kept in memory")
        store = MemoryMetadataStore()
    policy = PolicyService(
        store,
        storage.accounts,
        catalogue,
        default_reachability=default_reachability,
        clock=clock,
    )
    push = PushService(push_provider or LogPushProvider(), clock=clock)
    conversations = ConversationService(
        store,
        default_reachability=default_reachability,
        clock=clock,
        listener=listener or SettingsSync(storage.accounts, store, push),
    )
    return MetadataServices(
        store=store,
        policy=policy,
        conversations=conversations,
        contacts=ContactService(
            store, storage.accounts, policy, catalogue, clock=clock, limiter=contacts_limiter
        ),
        profiles=ProfileService(store, conversations, policy, clock=clock),
        push=push,
        report=ReportService(store, storage.accounts, storage.mailboxes, clock=clock),
        hooks=MetadataSendHooks(
            policy, store, conversations, push, presence_of(router), clock=clock
        ),
    )


def metadata_of(conn: HTTPConnection) -> MetadataServices:
    """The metadata services of the application serving ``conn``."""
    return cast(MetadataServices, conn.app.state.metadata)


def push_provider_for(config: ServerConfig) -> PushProvider:
    """Web Push when the configuration has a VAPID key and subject, else the log provider."""
    if config.vapid_private_key is not None and config.vapid_subject is not None:
        return WebPushProvider(config.vapid_private_key, config.vapid_subject)
    return LogPushProvider()
