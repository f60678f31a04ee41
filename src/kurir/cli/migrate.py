"""``kurir migrate``: apply (or only report) the storage migrations of a database.

This module owns the command line of migrations for both engines: the SQLite file in
``--data-dir`` (as ``kurir serve`` uses it) or the PostgreSQL database of ``--database URL``.
Migrations are numbered and forward-only; a database newer than this kurir is refused and left
untouched. ``kurir serve`` applies pending migrations itself when it opens its storage (both
engines alike), so this command is for doing it ahead of a rollout, and ``--status`` for
looking without changing anything. The storage modules are imported only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Final

__all__ = ["HELP", "add_parser", "run"]

HELP: Final = "apply the storage migrations (SQLite data dir or PostgreSQL)"


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``migrate``'s arguments."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="directory of the SQLite database (default: ./data)",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("KURIR_DATABASE") or None,
        metavar="URL",
        help="postgresql://... to migrate PostgreSQL instead of SQLite (default: $KURIR_DATABASE)",
    )
    parser.add_argument(
        "--status", action="store_true", help="only print the applied and known versions"
    )


def _sqlite(path: Path, *, status: bool) -> tuple[int, int, list[int]]:
    from kurir.server.storage.sqlite_db import Database, check_schema, load_migrations

    check_schema(path)  # refuses a newer file without writing
    known = len(load_migrations())

    def applied() -> int:
        if not path.exists():
            return 0
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()
        return 0 if row is None or row[0] is None else int(row[0])

    before = applied()
    if status:
        return before, known, []

    async def open_close() -> None:
        db = await asyncio.to_thread(Database.open, path)  # migrates on open
        await db.close()

    asyncio.run(open_close())
    return known, known, list(range(before + 1, known + 1))


def _postgres(dsn: str, *, status: bool) -> tuple[int, int, list[int]]:
    from kurir.server.storage.postgres_db import inspect_database, migrate_database

    current, known = asyncio.run(inspect_database(dsn))
    if status:
        return current, known, []
    applied = asyncio.run(migrate_database(dsn))
    return known, known, applied


def run(args: argparse.Namespace) -> int:
    """Migrate (or report); return 0, or 2 with the reason on stderr."""
    from kurir.server.app import DB_FILE
    from kurir.server.storage.errors import StorageError

    database: str | None = args.database
    try:
        if database is not None:
            if not database.startswith(("postgresql://", "postgres://")):
                raise StorageError("--database must be a postgresql:// URL")
            engine = "postgresql"
            current, known, applied = _postgres(database, status=args.status)
        else:
            engine = f"sqlite {args.data_dir / DB_FILE}"
            current, known, applied = _sqlite(args.data_dir / DB_FILE, status=args.status)
    except (StorageError, OSError, sqlite3.Error) as exc:
        print(f"kurir migrate: {exc}", file=sys.stderr)
        return 2
    if args.status:
        state = "up to date" if current == known else f"{known - current} pending"
        print(f"{engine}: schema {current} of {known} ({state})")
    elif applied:
        print(f"{engine}: applied {', '.join(map(str, applied))}; schema {current} of {known}")
    else:
        print(f"{engine}: schema {current} of {known}, nothing to apply")
    return 0
