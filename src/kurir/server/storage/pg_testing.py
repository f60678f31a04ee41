"""Scratch PostgreSQL databases and schemas for tests. Nothing in production imports it.

This module owns how kurir's tests reach PostgreSQL: the server is named by the
``KURIR_TEST_POSTGRES`` environment variable (default :data:`DEFAULT_TEST_DSN`, the local
server with trust authentication). A test session gets its own uniquely named database
(:func:`scratch_database`, dropped afterwards) and each test a fresh schema in it
(:func:`fresh_schema`), selected through ``?search_path=`` in the DSN it hands out, so a
``kurir serve`` child process can use it too. Without a reachable server, tests skip with the
reason, except under CI (``CI`` set), where they fail: CI must never skip them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import secrets
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Final, TypeVar

import asyncpg

__all__ = [
    "DEFAULT_TEST_DSN",
    "TEST_DSN_ENV",
    "admin_dsn",
    "fresh_schema",
    "require_postgres",
    "scratch_database",
    "with_database",
    "with_search_path",
]

TEST_DSN_ENV: Final = "KURIR_TEST_POSTGRES"
DEFAULT_TEST_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"
_CONNECT_TIMEOUT: Final = 5.0
_SCRATCH_NAME: Final = re.compile(r"kurir_test_(\d+)_[0-9a-f]{8}")
T = TypeVar("T")


def _run_sync(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # a fresh loop in a fresh thread: callable from sync code even while a loop is running
    # in this thread (a session fixture first requested by an async fixture)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fn()).result()


def admin_dsn() -> str:
    """The DSN of the administrative test database (``$KURIR_TEST_POSTGRES`` or the default)."""
    return os.environ.get(TEST_DSN_ENV) or DEFAULT_TEST_DSN


def _replace_query(dsn: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` whose connections use ``schema`` (server setting ``search_path``)."""
    return _replace_query(dsn, search_path=schema)


async def _unavailable(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return f"PostgreSQL not reachable via ${TEST_DSN_ENV} or the default: {exc}"
    await conn.close()
    return None


def require_postgres() -> str:
    """Return the admin test DSN if its server answers; otherwise skip the calling test, or
    fail it when ``CI`` is set. Call from a synchronous fixture or test (runs its own loop)."""
    import pytest  # test-only module: pytest is a dev dependency

    dsn = admin_dsn()
    reason = _run_sync(lambda: _unavailable(dsn))
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(reason)
    return dsn


async def _create_database(admin: str, name: str) -> None:
    conn = await asyncpg.connect(admin, timeout=_CONNECT_TIMEOUT)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin: str, name: str) -> None:
    conn = await asyncpg.connect(admin, timeout=_CONNECT_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _drop_stale(admin: str) -> None:
    # scratch databases of test sessions on this machine that were killed before cleaning up
    if urllib.parse.urlsplit(admin).hostname not in ("127.0.0.1", "localhost", "::1"):
        return
    conn = await asyncpg.connect(admin, timeout=_CONNECT_TIMEOUT)
    try:
        names = [
            r["datname"]
            for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'kurir\\_test\\_%'"
            )
        ]
    finally:
        await conn.close()
    for name in names:
        match = _SCRATCH_NAME.fullmatch(name)
        if match is not None and not _alive(int(match.group(1))):
            await _drop_database(admin, name)


@contextlib.contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    """Create a uniquely named database, yield its DSN, drop it afterwards (synchronous: runs
    its own event loops, for session fixtures). Scratch databases left by killed sessions on
    this machine are dropped first."""
    _run_sync(lambda: _drop_stale(admin))
    name = f"kurir_test_{os.getpid()}_{secrets.token_hex(4)}"
    _run_sync(lambda: _create_database(admin, name))
    try:
        yield with_database(admin, name)
    finally:
        _run_sync(lambda: _drop_database(admin, name))


async def fresh_schema(dsn: str) -> str:
    """Create an empty, uniquely named schema in ``dsn``'s database; return a DSN using it."""
    name = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    return with_search_path(dsn, name)
