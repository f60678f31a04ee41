"""Server configuration: the app catalogue and the tunables of one kurir server.

This module owns loading and validating the app catalogue (TOML; the built-in default is
``kurir/server/apps.toml``) and the frozen :class:`ServerConfig` the composition root
reads. It performs no I/O beyond reading the catalogue file.
"""

from __future__ import annotations

import hmac
import importlib.resources
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kurir.wire.address import IdentifierKind, valid_app_id

__all__ = [
    "AppCatalogue",
    "AppConfig",
    "ConfigError",
    "RateLimit",
    "RateLimits",
    "ServerConfig",
    "load_apps",
]

_COLOUR: Final = re.compile(r"#[0-9A-Fa-f]{6}")
DAY_MS: Final = 24 * 60 * 60 * 1000


class ConfigError(Exception):
    """The configuration is invalid; the message says which entry and why."""


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One app (tenant) of the backbone."""

    id: str
    display_name: str
    identifier_kind: IdentifierKind
    client_key: str = field(repr=False)
    colour: str


@dataclass(frozen=True, slots=True)
class AppCatalogue:
    """The configured apps; ids and client keys are unique."""

    apps: tuple[AppConfig, ...]

    def __post_init__(self) -> None:
        if not self.apps:
            raise ConfigError("the app catalogue is empty")
        ids = [a.id for a in self.apps]
        if len(set(ids)) != len(ids):
            raise ConfigError("app ids must be unique")
        keys = [a.client_key for a in self.apps]
        if len(set(keys)) != len(keys):
            raise ConfigError("client keys must be unique")

    def kinds(self) -> dict[str, IdentifierKind]:
        """Map app id to identifier kind (what :func:`kurir.wire.address.parse_address` takes)."""
        return {a.id: a.identifier_kind for a in self.apps}

    def get(self, app_id: str) -> AppConfig | None:
        """Return the app with this id, or ``None``."""
        return next((a for a in self.apps if a.id == app_id), None)

    def app_for_key(self, client_key: str) -> AppConfig | None:
        """Return the app whose client key this is (constant-time per comparison), or ``None``."""
        found = None
        for app in self.apps:
            if hmac.compare_digest(app.client_key.encode(), client_key.encode()):
                found = app
        return found


def _app(entry: object, index: int) -> AppConfig:
    where = f"apps[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    values: dict[str, str] = {}
    for name in ("id", "display_name", "identifier_kind", "client_key", "colour"):
        value = entry.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{name} must be a non-empty string")
        values[name] = value
    if not valid_app_id(values["id"]):
        raise ConfigError(f"{where}.id must match [a-z][a-z0-9_-]{{0,31}}")
    try:
        kind = IdentifierKind(values["identifier_kind"])
    except ValueError:
        raise ConfigError(f"{where}.identifier_kind must be phone, account or handle") from None
    if len(values["client_key"]) < 16:
        raise ConfigError(f"{where}.client_key must be at least 16 characters")
    if _COLOUR.fullmatch(values["colour"]) is None:
        raise ConfigError(f"{where}.colour must be #RRGGBB")
    return AppConfig(
        values["id"], values["display_name"], kind, values["client_key"], values["colour"]
    )


def load_apps(path: Path | None = None) -> AppCatalogue:
    """Load an app catalogue from ``path``, or the built-in default when ``None``.

    Raises:
        ConfigError: The file is not valid TOML or an entry is invalid.
        OSError: The file cannot be read.
    """
    if path is None:
        text = importlib.resources.files("kurir.server").joinpath("apps.toml").read_text("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"app catalogue is not valid TOML: {exc}") from None
    entries = data.get("apps")
    if not isinstance(entries, list):
        raise ConfigError("the app catalogue needs an [[apps]] array")
    return AppCatalogue(tuple(_app(e, i) for i, e in enumerate(entries)))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` tokens, refilled at one token per ``refill_ms``."""

    burst: int
    refill_ms: int

    def __post_init__(self) -> None:
        if self.burst < 1 or self.refill_ms < 1:
            raise ConfigError("rate limits need burst >= 1 and refill_ms >= 1")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The server's rate limits (docs/protocol.md §Rate limits)."""

    verification_per_address: RateLimit = RateLimit(3, 60_000)
    verification_per_host: RateLimit = RateLimit(30, 2_000)
    registration_per_address: RateLimit = RateLimit(5, 60_000)
    bundle_fetch_per_account: RateLimit = RateLimit(100, 1_000)
    failed_auth_per_host: RateLimit = RateLimit(20, 3_000)
    directory_per_account: RateLimit = RateLimit(60, 1_000)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything that configures one server. ``data_dir=None`` keeps state in memory.

    Attributes:
        apps: The app catalogue.
        data_dir: Where ``kurir.db`` lives; ``None`` selects the in-memory engine.
        host: Interface to listen on.
        port: TCP port; 0 picks a free one.
        mailbox_cap: Most envelopes queued per device; more are refused (``mailbox_full``).
        envelope_ttl_ms: Envelopes not acknowledged within this time expire (reported in
            ``drained.expired``).
        dev_verifier: Use the development verifier (fixed code ``123456``).
        limits: Rate limits.
        sweep_interval_s: Seconds between expiry sweeps.
        max_devices: Most devices per account, the primary included.
        group_member_cap: Most members per group (issue 6).
        database: A ``postgresql://`` URL: store everything in PostgreSQL (``data_dir`` is
            then unused). Kept out of ``repr`` (it may carry a password).
        redis: A ``redis://`` (or ``rediss://``) URL: route between several nodes through
            Redis (issue 7, :mod:`kurir.server.routing_redis`); ``None`` runs single-node.
        node_id: This node's id among nodes sharing a Redis; ``None`` picks a random one.
        metrics_token: Bearer token for ``GET /metrics``; ``None`` serves it to loopback only.
        default_reachability: Who from other apps may reach an account that never chose
            (issue 5): ``contacts`` by default (docs/metadata.md says why).
        vapid_private_key: PEM (or a PEM file's path) of the VAPID key: enables the Web Push
            provider (with ``vapid_subject``); ``None`` uses the development log provider.
        vapid_subject: The VAPID ``sub`` claim (``mailto:`` or ``https:`` URL of the operator).
        writer_cpus: The CPUs the SQLite writer process may run on (``kurir serve --pin-cpus``
            puts it on one CPU and the event loop on another); ``None``: any.
    """

    apps: AppCatalogue
    data_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    mailbox_cap: int = 10_000
    envelope_ttl_ms: int = 30 * DAY_MS
    dev_verifier: bool = True
    limits: RateLimits = RateLimits()
    sweep_interval_s: float = 60.0
    max_devices: int = 6
    group_member_cap: int = 1024
    database: str | None = field(default=None, repr=False)
    redis: str | None = field(default=None, repr=False)
    node_id: str | None = None
    metrics_token: str | None = field(default=None, repr=False)
    default_reachability: str = "contacts"
    vapid_private_key: str | None = field(default=None, repr=False)
    vapid_subject: str | None = None
    writer_cpus: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.database is not None and not self.database.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError("database must be a postgresql:// URL")
        if self.redis is not None and not self.redis.startswith(("redis://", "rediss://")):
            raise ConfigError("redis must be a redis:// or rediss:// URL")
        if self.writer_cpus is not None and (
            self.database is not None or self.data_dir is None or not self.writer_cpus
        ):
            raise ConfigError("writer_cpus needs the SQLite engine and at least one CPU")
        if self.mailbox_cap < 1:
            raise ConfigError("mailbox_cap must be at least 1")
        if self.default_reachability not in ("everyone", "contacts", "nobody"):
            raise ConfigError("default_reachability must be everyone, contacts or nobody")
        if self.envelope_ttl_ms < 1:
            raise ConfigError("envelope_ttl_ms must be at least 1")
        if self.group_member_cap < 1:
            raise ConfigError("group_member_cap must be at least 1")
        if self.max_devices < 1:
            raise ConfigError("max_devices must be at least 1")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be 0..65535")
