"""Finding people: addresses to accounts and devices, with a local cache.

Owns: normalising an address with the server's app catalogue (`kurir.wire.address`), resolving
it through ``POST /v1/directory`` and caching the answer in the store's contact table. It does
not know about sessions or messages.
"""

from __future__ import annotations

from uuid import UUID

from kurir.client.errors import InvalidAddressError, UnknownAddressError
from kurir.client.store import ClientStore, Contact
from kurir.client.transport import HttpApi
from kurir.wire.address import IdentifierKind, parse_address
from kurir.wire.errors import AddressError

__all__ = ["Directory"]


class Directory:
    """Resolves addresses for one client.

    Args:
        store: where resolved contacts are cached.
        http: the server's HTTP API.
    """

    def __init__(self, store: ClientStore, http: HttpApi) -> None:
        self._store = store
        self._http = http
        self._apps: dict[str, IdentifierKind] | None = None

    async def normalise(self, address: str) -> str:
        """Returns the normalised form of ``address`` (e.g. a phone number in E.164).

        Raises:
            InvalidAddressError: malformed, or of an app the server does not know.
        """
        if self._apps is None:
            catalogue = await self._http.apps()
            self._apps = {
                app.id: IdentifierKind(app.identifier_kind)
                for app in catalogue.apps
                if app.identifier_kind in IdentifierKind.__members__.values()
            }
        try:
            return str(parse_address(address.strip(), self._apps))
        except AddressError as exc:
            raise InvalidAddressError(
                f"{address!r} is not a valid address: {exc.message}"
            ) from None

    async def lookup(self, address: str, *, refresh: bool = False) -> Contact:
        """Resolves an address to its account and devices (from the cache unless ``refresh``).

        Raises:
            InvalidAddressError: the address is malformed.
            UnknownAddressError: nobody is registered under it.
        """
        normalised = await self.normalise(address)
        if not refresh:
            cached = self._store.contact(normalised)
            if cached is not None:
                return cached
        answer = await self._http.directory([normalised])
        for entry in answer.results:
            if entry.address == normalised:
                contact = Contact(normalised, entry.account_id, tuple(sorted(entry.devices)))
                self._store.put_contact(contact)
                return contact
        raise UnknownAddressError(normalised)

    def update_devices(self, contact: Contact, devices: set[int]) -> Contact:
        """Records a new device list for a contact (after the server said it changed)."""
        updated = Contact(contact.address, contact.account_id, tuple(sorted(devices)))
        self._store.put_contact(updated)
        return updated

    def known(self, account_id: UUID) -> Contact | None:
        """Returns the cached contact of an account, if any."""
        return self._store.contact_by_account(account_id)
