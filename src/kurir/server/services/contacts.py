"""Contacts and discovery: the uploaded address book and which entries are on kurir.

This module owns address-book uploads: entries are phone numbers in any format (parsed and
normalised to E.164 with libphonenumber; national numbers need the client's ``region``) or
full addresses (``instagram:@rina``). One malformed entry refuses the whole upload with
``invalid_request`` naming it, and nothing changes. The normalised list replaces the stored
address book (metadata the product openly keeps: it is what "only contacts" reachability is
checked against). The answer lists the entries that are registered *and* reachable for the
caller. Uploads are rate-limited per account (a small burst, then one per minute by default)
so the directory cannot be enumerated by uploading guessed numbers; with several nodes the
limit is shared through Redis (:mod:`kurir.server.shared_limits`), so N nodes grant one
budget, not N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from kurir.server.config import AppCatalogue, RateLimit
from kurir.server.errors import RateLimited, Refused
from kurir.server.services.policy import PolicyService
from kurir.server.shared_limits import CONTACT_UPLOAD_LIMIT, Limiter, LocalLimiter
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.protocols import AccountStore
from kurir.server.types import AccountId, Clock
from kurir.wire.address import Address, IdentifierKind, parse_address
from kurir.wire.errors import AddressError, ErrorCode

__all__ = ["DEFAULT_DISCOVERY_LIMIT", "ContactHit", "ContactService", "normalise_entry"]

DEFAULT_DISCOVERY_LIMIT: RateLimit = CONTACT_UPLOAD_LIMIT
"""Address-book uploads per account: a burst of 5, then one per minute."""


@dataclass(frozen=True, slots=True)
class ContactHit:
    """An uploaded entry that names a registered, reachable account."""

    entry: str
    address: Address
    account_id: AccountId


def normalise_entry(text: str, region: str | None, catalogue: AppCatalogue) -> str:
    """Normalise one address-book entry: an E.164 number or a normalised address.

    Raises:
        ValueError: Not a valid phone number nor a valid address (the message says why).
    """
    raw = text.strip()
    if ":" in raw:
        try:
            return str(parse_address(raw, catalogue.kinds()))
        except AddressError as exc:
            raise ValueError(exc.message) from None
    try:
        number = phonenumbers.parse(raw, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        hint = "" if region or raw.startswith("+") else " (national numbers need a region)"
        raise ValueError(f"not a phone number{hint}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class ContactService:
    """Address-book upload and discovery.

    Args:
        store: The metadata store (the address book).
        accounts: To find registered accounts.
        policy: Whether a found account is reachable for the caller.
        catalogue: Apps and their identifier kinds.
        limit: Uploads per account (for the default, node-local limiter).
        clock: Time source.
        limiter: The upload limiter, shared through Redis on several nodes
            (``Limiters.contact_upload_per_account``); default: node-local buckets of
            ``limit``.
    """

    def __init__(
        self,
        store: MetadataStore,
        accounts: AccountStore,
        policy: PolicyService,
        catalogue: AppCatalogue,
        *,
        limit: RateLimit = DEFAULT_DISCOVERY_LIMIT,
        clock: Clock,
        limiter: Limiter | None = None,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._policy = policy
        self._catalogue = catalogue
        self._limiter = limiter if limiter is not None else LocalLimiter(limit, clock)
        self._clock = clock

    async def upload(
        self, caller: AccountId, entries: Sequence[str], region: str | None
    ) -> tuple[list[str], list[ContactHit]]:
        """Store the normalised address book and return it with the reachable accounts.

        Raises:
            Refused: ``invalid_request`` naming the first malformed entry (nothing stored).
            RateLimited: Too many uploads recently (nothing stored).
        """
        if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise Refused(ErrorCode.INVALID_REQUEST, "$.region: unknown region code")
        normalised: list[str] = []
        for index, text in enumerate(entries):
            try:
                entry = normalise_entry(text, region, self._catalogue)
            except ValueError as exc:
                raise Refused(ErrorCode.INVALID_REQUEST, f"$.entries[{index}]: {exc}") from None
            if entry not in normalised:
                normalised.append(entry)
        key = str(caller)
        if not await self._limiter.try_acquire(key):
            raise RateLimited(await self._limiter.retry_after_s(key))
        await self._store.replace_contacts(caller, normalised, now=self._clock.now_ms())
        return normalised, await self._discover(caller, normalised)

    async def _discover(self, caller: AccountId, entries: list[str]) -> list[ContactHit]:
        phone_apps = [
            a.id for a in self._catalogue.apps if a.identifier_kind is IdentifierKind.PHONE
        ]
        wanted: list[tuple[str, Address]] = []
        for entry in entries:
            if entry.startswith("+"):
                wanted.extend((entry, Address(app, entry)) for app in phone_apps)
            else:
                wanted.append((entry, parse_address(entry, self._catalogue.kinds())))
        found = await self._accounts.lookup([a for _, a in wanted])
        hits: list[ContactHit] = []
        for entry, address in wanted:
            if address not in found:
                continue
            account_id = found[address][0]
            if account_id != caller and await self._policy.may_discover(caller, account_id):
                hits.append(ContactHit(entry, address, account_id))
        return hits

    async def contacts(self, caller: AccountId) -> list[str]:
        """The caller's stored address book."""
        return [c.entry for c in await self._store.contacts(caller)]
