"""Pending single-use codes: records, digests and the :class:`CodeStore` Protocol.

This module owns how the server keeps the codes it hands out and later redeems, so that a
code issued through one node is redeemed through any other (issue 7): verification codes
(registration; the verifier issues one per request for an address) and device-link codes
(``POST /v1/devices/link-code``). A code is never stored: a row holds the SHA-256
:func:`subject_digest` it is looked up by (of the address for a verification code, of the
code itself for a link code), the :func:`code_digest` it is checked against, the account a
link code adds a device to, a counter of wrong attempts and the expiry.

Redeeming is atomic: of two nodes redeeming the same code at once exactly one wins. A wrong
code for a subject counts an attempt; after ``max_attempts`` the code is gone, which is what
keeps a low-entropy code (six digits) from being guessed. Expired rows are deleted by
:meth:`CodeStore.expire` (the server's sweep) and whenever their subject gets a new code.

It knows nothing of HTTP, of verifiers or of accounts beyond the owner's id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from kurir.server.types import AccountId

__all__ = [
    "CodePurpose",
    "CodeStore",
    "PendingCode",
    "Redeemed",
    "code_digest",
    "subject_digest",
]

DIGEST_BYTES: Final = 32


class CodePurpose(StrEnum):
    """What a code authorises (stored as the row's ``purpose``)."""

    VERIFICATION = "verify"
    """Registering an address: looked up by the address, owned by nobody yet."""
    LINK = "link"
    """Adding a device to an account: looked up by the code, owned by that account."""


def subject_digest(purpose: CodePurpose, subject: str) -> bytes:
    """The key a code is stored under: SHA-256 of the purpose and the subject text (the
    normalised address of a verification code, the code itself for a link code)."""
    return hashlib.sha256(f"kurir-code-subject\0{purpose.value}\0{subject}".encode()).digest()


def code_digest(purpose: CodePurpose, subject: bytes, code: str) -> bytes:
    """What a code is checked against: SHA-256 of the purpose, the subject digest and the
    code, so equal codes of different subjects have different digests."""
    prefix = f"kurir-code\0{purpose.value}\0".encode()
    return hashlib.sha256(prefix + subject + b"\0" + code.encode()).digest()


@dataclass(frozen=True, slots=True)
class PendingCode:
    """A code to store (its subject's earlier code, if any, is replaced).

    Raises:
        ValueError: Digests that are not SHA-256 sized, an expiry not after creation, or an
            owner missing on a link code / present on a verification code.
    """

    purpose: CodePurpose
    subject: bytes = field(repr=False)
    digest: bytes = field(repr=False)
    owner: AccountId | None
    created_at: int
    expires_at: int

    def __post_init__(self) -> None:
        if len(self.subject) != DIGEST_BYTES or len(self.digest) != DIGEST_BYTES:
            raise ValueError("subject and digest must be SHA-256 digests")
        if self.expires_at <= self.created_at:
            raise ValueError("a code must expire after it is created")
        if (self.owner is None) != (self.purpose is CodePurpose.VERIFICATION):
            raise ValueError("link codes have an owner, verification codes have none")


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A code that matched and is now used up."""

    owner: AccountId | None
    """The account a link code adds a device to (``None`` for a verification code)."""


class CodeStore(Protocol):
    """Pending codes, shared by every node of one storage engine."""

    async def issue(self, code: PendingCode, *, max_per_owner: int) -> None:
        """Store ``code``, replacing its subject's earlier code (whose attempts are then
        forgotten).

        When the code has an owner, the owner holds at most ``max_per_owner`` codes of that
        purpose afterwards: ``code`` and the other unexpired ones that expire last; the rest
        (expired ones first) are deleted, so one account cannot fill the table.
        """
        ...

    async def redeem(
        self,
        purpose: CodePurpose,
        subject: bytes,
        digest: bytes,
        *,
        now: int,
        max_attempts: int,
    ) -> Redeemed | None:
        """Use up the subject's code if it is unexpired and ``digest`` matches, atomically:
        of concurrent redemptions (on any node) at most one returns :class:`Redeemed`.

        A wrong ``digest`` counts an attempt; the code is deleted once ``max_attempts``
        attempts were wrong (a right code then no longer works either).

        Returns:
            :class:`Redeemed`, or ``None`` for no such code, an expired, exhausted or already
            used one, or a wrong digest (the caller must not say which).
        """
        ...

    async def discard_owner(self, purpose: CodePurpose, owner: AccountId) -> int:
        """Delete every code of ``purpose`` owned by ``owner`` (its account was re-registered:
        codes made by its old devices must not add devices to it).

        Returns:
            The number of codes deleted.
        """
        ...

    async def expire(self, now: int) -> int:
        """Delete every code whose expiry has passed; return how many."""
        ...
