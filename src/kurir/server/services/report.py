"""The transparency report: every stored item about the calling account.

This module owns assembling and rendering the report (docs/metadata.md lists the same
tables and columns). On SQLite the rows come straight from every table of the schema
(:data:`kurir.server.storage.metadata_sqlite.REPORT_TABLES`, checked against the schema by a
test); the in-memory engine's report is assembled from the stores. Rows that other users
keep *about* the caller (their blocks, their contact lists) are theirs and not included: a
blocked user must not learn of the block. Secrets and ciphertext (password salt and hash,
envelope bodies) are shown as their size only; public keys and ids as base64.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Final

from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.protocols import AccountStore, MailboxStore
from kurir.server.types import AccountId, Clock

__all__ = ["ReportService", "Rows", "render_value"]

Rows = dict[str, list[dict[str, object]]]
SIZE_ONLY: Final = frozenset({"salt", "password_hash", "body"})
"""Columns whose content the report does not repeat, only its size."""


def render_value(column: str, value: object) -> object:
    """A JSON-safe rendering of one stored value."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if column in SIZE_ONLY:
            return f"<{len(raw)} bytes, not shown>"
        return base64.b64encode(raw).decode()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class ReportService:
    """Builds transparency reports.

    Args:
        metadata: The metadata store (reads whole tables where it can).
        accounts: Accounts and devices (memory engine fallback).
        mailboxes: Queued envelopes (memory engine fallback).
        clock: Time source.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        accounts: AccountStore,
        mailboxes: MailboxStore,
        *,
        clock: Clock,
    ) -> None:
        self._metadata = metadata
        self._accounts = accounts
        self._mailboxes = mailboxes
        self._clock = clock

    async def report(self, account_id: AccountId) -> tuple[int, Rows]:
        """(generation time, rows by table) of everything stored about ``account_id``."""
        rows = await self._metadata.report_rows(account_id)
        if rows is None:
            rows = await self._assemble(account_id)
        rendered = {
            table: [{c: render_value(c, v) for c, v in row.items()} for row in table_rows]
            for table, table_rows in rows.items()
        }
        return self._clock.now_ms(), rendered

    async def _assemble(self, account_id: AccountId) -> Rows:
        me = str(account_id)
        out: Rows = {}
        account = await self._accounts.get_account(account_id)
        out["accounts"] = (
            []
            if account is None
            else [
                {
                    "account_id": me,
                    "app": account.address.app,
                    "identifier": account.address.identifier,
                    "identity_key": account.identity_key,
                    "created_at": account.created_at,
                }
            ]
        )
        devices = await self._accounts.list_devices(account_id)
        out["devices"] = [asdict(d) for d in devices]
        out["envelopes"] = []
        for d in devices:
            for env in await self._mailboxes.fetch(
                account_id, d.device_id, after_seq=0, limit=10_000, now=self._clock.now_ms()
            ):
                out["envelopes"].append(
                    {"account_id": me, "device_id": d.device_id, **env._asdict()}
                )
        stored = await self._metadata.stored_settings(account_id)
        out["account_settings"] = [] if stored is None else [{"account_id": me, **asdict(stored)}]
        avatar = await self._metadata.avatar(account_id)
        out["avatars"] = [] if avatar is None else [{"account_id": me, **asdict(avatar)}]
        out["blocks"] = [asdict(b) for b in await self._metadata.blocks(account_id)]
        out["conversations"] = [asdict(c) for c in await self._metadata.conversations(account_id)]
        out["contacts"] = [asdict(c) for c in await self._metadata.contacts(account_id)]
        out["push_subscriptions"] = [
            asdict(s) for s in await self._metadata.push_subscriptions(account_id)
        ]
        return out
