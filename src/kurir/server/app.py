"""The composition root: ``create_app`` wires config, clock, randomness, storage and services.

This module owns building the ASGI application and its lifespan (open the storage engine,
build the services, run the expiry sweep, close everything). It is the only place where
concrete engines and verifiers are chosen; services receive everything as parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from kurir.server.asgi_ws import DirectWebSocket
from kurir.server.config import ServerConfig
from kurir.server.context import Services
from kurir.server.groups_http import group_routes
from kurir.server.http import http_exception_handler, routes
from kurir.server.metadata_app import build_metadata, push_provider_for
from kurir.server.metadata_http import metadata_routes
from kurir.server.metrics import MeteredMessageService, Metrics, metrics_endpoint
from kurir.server.openapi import openapi_document
from kurir.server.recheck import CredentialRecheck
from kurir.server.routing import open_router, router_healthy
from kurir.server.routing_redis import RedisRouter
from kurir.server.services.accounts import AccountService
from kurir.server.services.delivery import presence_of
from kurir.server.services.group_push import AccountDefaults, GroupPush
from kurir.server.services.groups import GroupService
from kurir.server.services.keys import KeyService
from kurir.server.services.messages import MessageService
from kurir.server.services.policy import GroupAddPolicy
from kurir.server.shared_limits import close_limiters, open_limiters
from kurir.server.storage.codes import CodeStore
from kurir.server.storage.codes_memory import MemoryCodeStore
from kurir.server.storage.memory import MemoryEngine
from kurir.server.storage.metadata_records import Reachability
from kurir.server.storage.protocols import StorageEngine
from kurir.server.storage.sqlite import SqliteEngine
from kurir.server.types import Clock, Rng
from kurir.server.verifier import DevVerifier, Verifier
from kurir.server.ws import websocket_endpoint

__all__ = ["DB_FILE", "create_app"]

_log = logging.getLogger("kurir.server")
DB_FILE: Final = "kurir.db"


def _version() -> str:
    try:
        return importlib.metadata.version("kurir")
    except importlib.metadata.PackageNotFoundError:
        return "0"


async def _open_engine(config: ServerConfig) -> StorageEngine:
    if config.database is not None:  # migrates on open, as the SQLite engine does
        from kurir.server.storage.postgres import PostgresEngine

        pg = await PostgresEngine.open(config.database)
        _log.info("storage: postgresql")
        return pg
    if config.data_dir is None:
        _log.info("storage: in memory (nothing survives a restart)")
        return MemoryEngine()
    engine = await asyncio.to_thread(
        SqliteEngine.open, config.data_dir / DB_FILE, writer_cpus=config.writer_cpus
    )
    _log.info("storage: sqlite")
    return engine


async def _sweep(
    messages: MessageService, codes: CodeStore, clock: Clock, interval_s: float
) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            expired = await messages.expire()
            await codes.expire(clock.now_ms())  # unused verification and link codes
        except Exception:
            _log.exception("expiry sweep failed")
        else:
            if expired:
                _log.info("expired %d envelopes", expired)


def create_app(
    config: ServerConfig, *, clock: Clock, rng: Rng, verifier: Verifier | None = None
) -> Starlette:
    """Build the kurir ASGI application.

    Storage is opened when the application starts (ASGI lifespan) and closed when it stops.

    Args:
        config: The server configuration.
        clock: Time source for every service.
        rng: Randomness for account ids and salts.
        verifier: Address verifier; ``None`` with ``config.dev_verifier`` uses the development
            verifier (fixed code, loud warning).

    Raises:
        ValueError: No verifier given and the development verifier is disabled.
    """
    if verifier is None and not config.dev_verifier:
        raise ValueError("a verifier is required when dev_verifier is off")
    dev_mode = verifier is None
    version = _version()
    openapi = openapi_document(version)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if dev_mode:
            _log.warning(
                "DEVELOPMENT MODE: the development verifier accepts the code 123456 for every "
                "address. Anyone can register any address. Never run this in production."
            )
        engine = await _open_engine(config)
        storage = engine.storage
        # pending codes live in the engine, so any node redeems a code made by another
        codes = storage.codes if storage.codes is not None else MemoryCodeStore()
        registry = open_router(config.redis, rng=rng, node_id=config.node_id)
        limiters = open_limiters(config.redis, config.limits, clock)
        await registry.start()
        metrics.watch(connections=registry.__len__, redis_up=lambda: router_healthy(registry))
        metadata = build_metadata(  # issue 5: blocks, reachability, counts, push, report
            storage,
            config.apps,
            registry,
            clock=clock,
            default_reachability=Reachability(config.default_reachability),
            push_provider=push_provider_for(config),
            contacts_limiter=limiters.contact_upload_per_account,  # shared across nodes
        )
        app.state.metadata = metadata
        messages = MeteredMessageService(
            storage.accounts,
            storage.mailboxes,
            registry,
            clock=clock,
            mailbox_cap=config.mailbox_cap,
            envelope_ttl_ms=config.envelope_ttl_ms,
            metrics=metrics,
            hooks=metadata.hooks,
        )
        accounts = AccountService(
            storage.accounts,
            config.apps,
            verifier if verifier is not None else DevVerifier(clock, codes),
            config.limits,
            clock=clock,
            rng=rng,
            revoker=registry,
            max_devices=config.max_devices,
            limiters=limiters,
            codes=codes,
        )
        app.state.services = Services(
            accounts=accounts,
            keys=KeyService(storage.keys, limiters.bundle_fetch_per_account),
            messages=messages,
            connections=registry,
            clock=clock,
            groups=(
                None
                if storage.groups is None
                else GroupService(
                    storage.groups,
                    registry,
                    clock=clock,
                    rng=rng,
                    policy=GroupAddPolicy(metadata.policy),  # issue 5
                    member_cap=config.group_member_cap,
                    mailbox_cap=config.mailbox_cap,
                    envelope_ttl_ms=config.envelope_ttl_ms,
                    after_fan_out=GroupPush(
                        storage.groups,
                        metadata.push,
                        metadata.store,
                        presence_of(registry),
                        AccountDefaults(metadata.conversations),
                        clock=clock,
                    ),
                )
            ),
        )
        if isinstance(registry, RedisRouter):  # revocations missed while Redis was away
            registry.recheck_after_resubscribe(CredentialRecheck(accounts))
        sweeper = asyncio.create_task(_sweep(messages, codes, clock, config.sweep_interval_s))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await registry.close()
            await close_limiters(limiters)
            await engine.close()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    return Starlette(
        routes=[
            *routes(),
            *group_routes(),
            *metadata_routes(),
            Route("/openapi.json", openapi_json, methods=["GET"], name="openapi"),
            Route(
                "/metrics",
                metrics_endpoint(metrics, config.metrics_token),
                methods=["GET"],
                name="metrics",
            ),
            WebSocketRoute("/v1/ws", websocket_endpoint, name="websocket"),
        ],
        # the device WebSocket skips the router's layers (memory per idle device: asgi_ws.py)
        middleware=[Middleware(DirectWebSocket, path="/v1/ws", endpoint=websocket_endpoint)],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=lifespan,
    )
