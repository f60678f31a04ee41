"""The in-memory reference implementation of :class:`~kurir.server.storage.codes.CodeStore`.

This module owns the reference semantics of pending codes: one dictionary keyed by
(purpose, subject), every method atomic because it never awaits. The SQLite and PostgreSQL
stores are held to the same behaviour by tests/server/storage/test_codes_conformance.py.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from kurir.server.storage.codes import CodePurpose, PendingCode, Redeemed
from kurir.server.types import AccountId

__all__ = ["MemoryCodeStore"]


@dataclass(slots=True)
class _Row:
    code: PendingCode
    attempts: int = 0


class MemoryCodeStore:
    """Pending codes in a dictionary; nothing survives the process, nothing is shared."""

    def __init__(self) -> None:
        self._rows: dict[tuple[CodePurpose, bytes], _Row] = {}

    async def issue(self, code: PendingCode, *, max_per_owner: int) -> None:
        """See :class:`CodeStore`."""
        self._rows[(code.purpose, code.subject)] = _Row(code)
        if code.owner is None:
            return
        others = sorted(
            (
                row.code
                for row in self._rows.values()
                if row.code.purpose is code.purpose
                and row.code.owner == code.owner
                and row.code.subject != code.subject
            ),
            key=lambda c: (c.expires_at, c.subject),
            reverse=True,
        )
        live = [c for c in others if c.expires_at > code.created_at]
        keep = {c.subject for c in live[: max(0, max_per_owner - 1)]}
        for old in others:
            if old.subject not in keep:
                del self._rows[(old.purpose, old.subject)]

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
        key = (purpose, subject)
        row = self._rows.get(key)
        if row is None:
            return None
        if row.code.expires_at <= now or row.attempts >= max_attempts:
            del self._rows[key]
            return None
        if hmac.compare_digest(row.code.digest, digest):
            del self._rows[key]
            return Redeemed(row.code.owner)
        row.attempts += 1
        if row.attempts >= max_attempts:
            del self._rows[key]
        return None

    async def discard_owner(self, purpose: CodePurpose, owner: AccountId) -> int:
        """See :class:`CodeStore`."""
        gone = [k for k, r in self._rows.items() if k[0] is purpose and r.code.owner == owner]
        for key in gone:
            del self._rows[key]
        return len(gone)

    async def expire(self, now: int) -> int:
        """See :class:`CodeStore`."""
        gone = [k for k, r in self._rows.items() if r.code.expires_at <= now]
        for key in gone:
            del self._rows[key]
        return len(gone)
