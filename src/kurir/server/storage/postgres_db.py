"""The PostgreSQL database: connection pool, migrations, schema checks, transactions.

This module owns the connection lifecycle of the PostgreSQL engine: opening an ``asyncpg``
pool from a DSN (clear errors, never echoing the DSN, which may hold a password), applying
the numbered forward-only migrations of :mod:`kurir.server.storage.migrations_pg` under an
advisory lock (so several nodes starting at once migrate exactly once), refusing a schema
newer than this kurir, and running one function as one transaction, retried when PostgreSQL
aborts it as a deadlock victim or a serialization failure (the whole transaction was rolled
back, so running it again is safe). It knows nothing of accounts or mailboxes.

Unqualified table names resolve through ``search_path``, so a deployment (or a test) can put
kurir in its own schema with ``?search_path=NAME`` in the DSN.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from kurir.server.storage.errors import SchemaTooNew, StorageError

__all__ = [
    "Conn",
    "PgDatabase",
    "apply_migrations",
    "check_schema",
    "connect_pool",
    "inspect_database",
    "load_migrations",
    "migrate_database",
    "schema_version",
]

T = TypeVar("T")
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
"""A connection taken from the engine's pool."""

_log = logging.getLogger(__name__)
_MIGRATION_NAME: Final = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_MIGRATION_LOCK: Final = 0x6B75726972
"""pg_advisory_xact_lock key held while migrating ('kurir' in ASCII)."""
_ATTEMPTS: Final = 5
_TRANSIENT: Final = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_DATABASE_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _failure(exc: BaseException) -> StorageError:
    _log.error("database failure: %s", type(exc).__name__)  # the text may quote user data
    return StorageError(f"database failure: {type(exc).__name__}")


def load_migrations() -> list[tuple[int, str]]:
    """Return the packaged PostgreSQL migrations as (version, sql), numbered 1..n.

    Raises:
        StorageError: The numbering has a gap.
    """
    package = importlib.resources.files("kurir.server.storage.migrations_pg")
    found: list[tuple[int, str]] = []
    for entry in package.iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match is not None:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise StorageError("PostgreSQL migrations are not numbered 1..n without gaps")
    return found


def _describe(exc: BaseException) -> str:
    # asyncpg's messages name host, port, user or database, never the password
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def connect_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a connection pool.

    Raises:
        StorageError: The server cannot be reached or refused the connection (the message
            says why, without the DSN).
    """
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL: {_describe(exc)}") from None
    return pool


async def schema_version(conn: Conn) -> int:
    """The highest applied migration (0 when kurir's schema is not there yet)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    current = await conn.fetchval("SELECT MAX(version) FROM schema_version")
    return 0 if current is None else int(current)


def _refuse_newer(current: int, known: int) -> None:
    if current > known:
        raise SchemaTooNew(f"database schema {current} is newer than this kurir ({known})")


async def check_schema(conn: Conn) -> tuple[int, int]:
    """Return (applied, known) migration versions without changing anything.

    Raises:
        SchemaTooNew: The database was migrated by a newer kurir.
    """
    current = await schema_version(conn)
    known = len(load_migrations())
    _refuse_newer(current, known)
    return current, known


async def apply_migrations(conn: Conn) -> list[int]:
    """Apply every pending migration in ONE transaction under the migration advisory lock.

    Concurrent callers (several nodes starting together) wait for the lock, then find nothing
    left to do. Either every pending migration is applied or none is.

    Returns:
        The versions applied now (empty when the schema was current).

    Raises:
        SchemaTooNew: The database was migrated by a newer kurir.
    """
    migrations = load_migrations()
    known = migrations[-1][0] if migrations else 0
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await schema_version(conn)
        _refuse_newer(current, known)
        for version, sql in migrations:
            if version <= current:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            applied.append(version)
    for version in applied:
        _log.info("applied storage migration %d (postgresql)", version)
    return applied


async def inspect_database(dsn: str) -> tuple[int, int]:
    """Connect once and return (applied, known) migration versions; change nothing.

    Raises:
        StorageError: The server is unreachable.
        SchemaTooNew: The database was migrated by a newer kurir.
    """
    pool = await connect_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await check_schema(conn)
    finally:
        await pool.close()


async def migrate_database(dsn: str) -> list[int]:
    """Connect once and apply every pending migration; return the versions applied.

    Raises:
        StorageError: The server is unreachable.
        SchemaTooNew: The database was migrated by a newer kurir.
    """
    pool = await connect_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await apply_migrations(conn)
    finally:
        await pool.close()


class PgDatabase:
    """An open PostgreSQL database: its pool and the transaction runner.

    Use :meth:`open` and always :meth:`close`.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls, dsn: str, *, migrate: bool = True, min_size: int = 2, max_size: int = 10
    ) -> PgDatabase:
        """Connect, check the schema and (with ``migrate``) apply pending migrations.

        Raises:
            StorageError: Unreachable server, or ``migrate=False`` and the schema is behind
                (run ``kurir migrate``).
            SchemaTooNew: The database was migrated by a newer kurir.
        """
        pool = await connect_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            async with pool.acquire() as conn:
                if migrate:
                    await apply_migrations(conn)
                else:
                    current, known = await check_schema(conn)
                    if current < known:
                        raise StorageError(
                            f"database schema {current} is older than this kurir ({known}):"
                            " run `kurir migrate`"
                        )
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction on a pooled connection; return once committed.

        A transaction PostgreSQL aborted as a deadlock victim or serialization failure is run
        again (a few times): ``fn`` must therefore have no effect outside the database.

        Raises:
            StorageError: The database failed (lost connection, constraint the SQL did not
                expect...): our fault, reported without the database's message.
            RequestRefused: As raised by ``fn`` (the transaction was rolled back).
        """
        attempt = 1
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await fn(conn)
            except _TRANSIENT:
                if attempt >= _ATTEMPTS:
                    raise StorageError("transaction kept conflicting; gave up") from None
                attempt += 1
            except _DATABASE_FAILURES as exc:
                raise _failure(exc) from None

    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` (reads only) on a pooled connection, outside an explicit transaction.

        Raises:
            StorageError: As :meth:`transaction`.
        """
        try:
            async with self.pool.acquire() as conn:
                return await fn(conn)
        except _DATABASE_FAILURES as exc:
            raise _failure(exc) from None

    async def close(self) -> None:
        """Close every connection (waits for the ones in use to be released)."""
        await self.pool.close()
