"""Pending codes in the SQLite engine's database (table ``pending_codes``, migration 0005).

This module owns the SQL of :class:`~kurir.server.storage.codes.CodeStore` on SQLite. Every
method is one operation on the engine's single writer (:mod:`kurir.server.storage.sqlite_db`),
so a redemption's read, compare and delete cannot interleave with another's; the operations
are module-level functions, sent to the writer process by name.
"""

from __future__ import annotations

import hmac
import sqlite3
from uuid import UUID

from kurir.server.storage.codes import CodePurpose, PendingCode, Redeemed
from kurir.server.storage.sqlite_db import Database
from kurir.server.types import AccountId

__all__ = ["SqliteCodeStore"]


def _issue(conn: sqlite3.Connection, code: PendingCode, max_per_owner: int) -> None:
    owner = None if code.owner is None else str(code.owner)
    conn.execute(
        "INSERT INTO pending_codes (purpose, subject, code_hash, owner, attempts,"
        " created_at, expires_at) VALUES (?, ?, ?, ?, 0, ?, ?)"
        " ON CONFLICT (purpose, subject) DO UPDATE SET code_hash = excluded.code_hash,"
        " owner = excluded.owner, attempts = 0, created_at = excluded.created_at,"
        " expires_at = excluded.expires_at",
        (code.purpose.value, code.subject, code.digest, owner, code.created_at, code.expires_at),
    )
    if owner is None:
        return
    conn.execute(
        "DELETE FROM pending_codes WHERE owner = ? AND purpose = ? AND subject != ?"
        " AND subject NOT IN (SELECT subject FROM pending_codes"
        "  WHERE owner = ? AND purpose = ? AND subject != ? AND expires_at > ?"
        "  ORDER BY expires_at DESC, subject DESC LIMIT ?)",
        (
            owner,
            code.purpose.value,
            code.subject,
            owner,
            code.purpose.value,
            code.subject,
            code.created_at,
            max(0, max_per_owner - 1),
        ),
    )


def _redeem(
    conn: sqlite3.Connection,
    purpose: CodePurpose,
    subject: bytes,
    digest: bytes,
    now: int,
    max_attempts: int,
) -> Redeemed | None:
    key = (purpose.value, subject)
    row = conn.execute(
        "SELECT code_hash, owner, attempts, expires_at FROM pending_codes"
        " WHERE purpose = ? AND subject = ?",
        key,
    ).fetchone()
    if row is None:
        return None
    stored, owner, attempts, expires_at = bytes(row[0]), row[1], int(row[2]), int(row[3])
    if expires_at > now and attempts < max_attempts:
        if hmac.compare_digest(stored, digest):
            conn.execute("DELETE FROM pending_codes WHERE purpose = ? AND subject = ?", key)
            return Redeemed(None if owner is None else AccountId(UUID(owner)))
        attempts += 1
        if attempts < max_attempts:
            conn.execute(
                "UPDATE pending_codes SET attempts = ? WHERE purpose = ? AND subject = ?",
                (attempts, *key),
            )
            return None
    conn.execute("DELETE FROM pending_codes WHERE purpose = ? AND subject = ?", key)
    return None


def _discard_owner(conn: sqlite3.Connection, purpose: CodePurpose, owner: AccountId) -> int:
    cursor = conn.execute(
        "DELETE FROM pending_codes WHERE owner = ? AND purpose = ?", (str(owner), purpose.value)
    )
    return cursor.rowcount


def _expire(conn: sqlite3.Connection, now: int) -> int:
    return conn.execute("DELETE FROM pending_codes WHERE expires_at <= ?", (now,)).rowcount


class SqliteCodeStore:
    """Pending codes in the engine's SQLite database.

    Args:
        db: The open database (migrated to schema 5 or later).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(self, code: PendingCode, *, max_per_owner: int) -> None:
        """See :class:`CodeStore`."""
        await self._db.write(_issue, code, max_per_owner)

    async def redeem(
        self,
        purpose: CodePurpose,
        subject: bytes,
        digest: bytes,
        *,
        now: int,
        max_attempts: int,
    ) -> Redeemed | None:
        """See :class:`CodeStore`."""
        return await self._db.write(_redeem, purpose, subject, digest, now, max_attempts)

    async def discard_owner(self, purpose: CodePurpose, owner: AccountId) -> int:
        """See :class:`CodeStore`."""
        return await self._db.write(_discard_owner, purpose, owner)

    async def expire(self, now: int) -> int:
        """See :class:`CodeStore`."""
        return await self._db.write(_expire, now)
