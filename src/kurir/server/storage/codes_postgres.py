"""Pending codes in the PostgreSQL engine's database (table ``pending_codes``, migration 0005).

This module owns the SQL of :class:`~kurir.server.storage.codes.CodeStore` on PostgreSQL.
A redemption locks its row (``SELECT ... FOR UPDATE``) in one transaction, so when nodes
redeem the same code at once, the first deletes it and the others, waiting on the lock, find
no row: exactly one wins.
"""

from __future__ import annotations

import hmac

from kurir.server.storage.codes import CodePurpose, PendingCode, Redeemed
from kurir.server.storage.postgres_db import Conn, PgDatabase
from kurir.server.types import AccountId

__all__ = ["PgCodeStore"]


def _count(status: str) -> int:
    """The row count of a command status such as ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])


class PgCodeStore:
    """Pending codes in the engine's PostgreSQL database.

    Args:
        db: The open database (migrated to schema 5 or later).
    """

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def issue(self, code: PendingCode, *, max_per_owner: int) -> None:
        """See :class:`CodeStore`."""

        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO pending_codes (purpose, subject, code_hash, owner, attempts,"
                " created_at, expires_at) VALUES ($1, $2, $3, $4, 0, $5, $6)"
                " ON CONFLICT (purpose, subject) DO UPDATE SET code_hash = excluded.code_hash,"
                " owner = excluded.owner, attempts = 0, created_at = excluded.created_at,"
                " expires_at = excluded.expires_at",
                code.purpose.value,
                code.subject,
                code.digest,
                code.owner,
                code.created_at,
                code.expires_at,
            )
            if code.owner is None:
                return
            await conn.execute(
                "DELETE FROM pending_codes WHERE owner = $1 AND purpose = $2 AND subject <> $3"
                " AND subject NOT IN (SELECT subject FROM pending_codes"
                "  WHERE owner = $1 AND purpose = $2 AND subject <> $3 AND expires_at > $4"
                "  ORDER BY expires_at DESC, subject DESC LIMIT $5)",
                code.owner,
                code.purpose.value,
                code.subject,
                code.created_at,
                max(0, max_per_owner - 1),
            )

        await self._db.transaction(op)

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

        async def op(conn: Conn) -> Redeemed | None:
            row = await conn.fetchrow(
                "SELECT code_hash, owner, attempts, expires_at FROM pending_codes"
                " WHERE purpose = $1 AND subject = $2 FOR UPDATE",
                purpose.value,
                subject,
            )
            if row is None:
                return None
            attempts = int(row["attempts"])
            if int(row["expires_at"]) > now and attempts < max_attempts:
                if hmac.compare_digest(bytes(row["code_hash"]), digest):
                    await conn.execute(
                        "DELETE FROM pending_codes WHERE purpose = $1 AND subject = $2",
                        purpose.value,
                        subject,
                    )
                    owner = row["owner"]
                    return Redeemed(None if owner is None else AccountId(owner))
                attempts += 1
                if attempts < max_attempts:
                    await conn.execute(
                        "UPDATE pending_codes SET attempts = $3"
                        " WHERE purpose = $1 AND subject = $2",
                        purpose.value,
                        subject,
                        attempts,
                    )
                    return None
            await conn.execute(
                "DELETE FROM pending_codes WHERE purpose = $1 AND subject = $2",
                purpose.value,
                subject,
            )
            return None

        return await self._db.transaction(op)

    async def discard_owner(self, purpose: CodePurpose, owner: AccountId) -> int:
        """See :class:`CodeStore`."""

        async def op(conn: Conn) -> int:
            status = await conn.execute(
                "DELETE FROM pending_codes WHERE owner = $1 AND purpose = $2",
                owner,
                purpose.value,
            )
            return _count(status)

        return await self._db.transaction(op)

    async def expire(self, now: int) -> int:
        """See :class:`CodeStore`."""

        async def op(conn: Conn) -> int:
            return _count(
                await conn.execute("DELETE FROM pending_codes WHERE expires_at <= $1", now)
            )

        return await self._db.transaction(op)
