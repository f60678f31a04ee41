"""Accounts: verification, registration, authentication, device lists and the directory.

This module owns the rules of who may register which address (app client keys, verifier,
rate limits) and how a device proves itself (Basic credentials against the stored hash,
failed attempts rate-limited per host). It knows nothing of HTTP or WebSockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from kurir.server.config import AppCatalogue, RateLimits
from kurir.server.credentials import hash_password, verify_password
from kurir.server.errors import RateLimited, Refused
from kurir.server.shared_limits import Limiters, open_limiters
from kurir.server.storage.codes import (
    CodePurpose,
    CodeStore,
    PendingCode,
    code_digest,
    subject_digest,
)
from kurir.server.storage.codes_memory import MemoryCodeStore
from kurir.server.storage.errors import TooManyDevices, UnknownDevice
from kurir.server.storage.protocols import AccountStore
from kurir.server.storage.records import AccountRecord, DeviceRecord, NewDevice
from kurir.server.types import (
    PRIMARY_DEVICE,
    AccountId,
    Clock,
    DeviceId,
    DeviceRef,
    Rng,
    new_account_id,
)
from kurir.server.verifier import Verifier
from kurir.wire.address import Address, parse_address
from kurir.wire.auth import decode_password, encode_password, parse_basic_auth
from kurir.wire.errors import AddressError, ErrorCode, WireError

__all__ = ["AccountService", "AuthedDevice", "DirectoryHit", "Revoker"]

_LINK_CODE_TTL_MS: Final = 10 * 60 * 1000
_MAX_LINK_CODES_PER_ACCOUNT: Final = 10
_LINK: Final = CodePurpose.LINK
_DUMMY_SALT = b"\x00" * 16
_DUMMY_HASH = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class AuthedDevice:
    """A device that proved its credentials on this request or connection."""

    ref: DeviceRef
    address: Address
    credential: bytes = field(default=b"", repr=False)
    """The salt of the stored credentials it proved: a new device record (re-registration)
    has a new one, so a live connection can be checked again later (:meth:`AccountService.
    revoked`). Empty when unknown."""

    @property
    def account_id(self) -> AccountId:
        """The device's account."""
        return self.ref.account_id

    @property
    def device_id(self) -> DeviceId:
        """The device's id."""
        return self.ref.device_id


@dataclass(frozen=True, slots=True)
class DirectoryHit:
    """A registered address and its account's devices."""

    address: Address
    account_id: AccountId
    devices: list[DeviceId]


class Revoker(Protocol):
    """Ends live sessions whose credentials stopped being valid."""

    def revoke_account(self, account_id: AccountId) -> None:
        """Close every live connection of the account."""
        ...

    def revoke_device(self, device: DeviceRef) -> None:
        """Close the live connection of one device."""
        ...


class AccountService:
    """Registration and authentication.

    Args:
        store: The account store.
        apps: The app catalogue.
        verifier: Sends and checks verification codes.
        limits: Rate limits.
        clock: Time source.
        rng: Randomness for account ids and salts.
        revoker: Closes the live connections of a re-registered account or removed device.
        max_devices: Most devices per account, the primary included.
        limiters: The rate limiters (shared through Redis on several nodes); default:
            node-local buckets of ``limits``.
        codes: Where pending link codes are kept: the storage engine's store, shared by
            every node (issue 7); default: this process's memory (one node only).
    """

    def __init__(
        self,
        store: AccountStore,
        apps: AppCatalogue,
        verifier: Verifier,
        limits: RateLimits,
        *,
        clock: Clock,
        rng: Rng,
        revoker: Revoker,
        max_devices: int = 6,
        limiters: Limiters | None = None,
        codes: CodeStore | None = None,
    ) -> None:
        self._store = store
        self._revoker = revoker
        self._max_devices = max_devices
        self._codes: CodeStore = codes if codes is not None else MemoryCodeStore()
        self._apps = apps
        self._kinds = apps.kinds()
        self._verifier = verifier
        self._clock = clock
        self._rng = rng
        # shared across nodes when the composition root passes Redis-backed limiters
        lim = limiters if limiters is not None else open_limiters(None, limits, clock)
        self._verify_address = lim.verification_per_address
        self._verify_host = lim.verification_per_host
        self._register_address = lim.registration_per_address
        self._failed_auth = lim.failed_auth_per_host
        self._directory = lim.directory_per_account

    @property
    def catalogue(self) -> AppCatalogue:
        """The app catalogue."""
        return self._apps

    def parse(self, text: str) -> Address:
        """Parse an address against the catalogue.

        Raises:
            Refused: ``invalid_address`` or ``unknown_app``.
        """
        try:
            return parse_address(text, self._kinds)
        except AddressError as exc:
            raise Refused(exc.code, exc.message) from None

    def _check_app_key(self, address: Address, client_key: str | None) -> None:
        app = self._apps.app_for_key(client_key) if client_key else None
        if app is None:
            raise Refused(ErrorCode.FORBIDDEN, "missing or unknown X-Kurir-App-Key")
        if app.id != address.app:
            raise Refused(ErrorCode.WRONG_APP, "this client may not register addresses of that app")

    async def request_code(self, address_text: str, client_key: str | None, host: str) -> None:
        """Ask the verifier to send a code to the address.

        Raises:
            Refused: Invalid address, wrong/unknown client key, or rate limited.
        """
        address = self.parse(address_text)
        self._check_app_key(address, client_key)
        if not await self._verify_host.try_acquire(host):
            raise RateLimited(await self._verify_host.retry_after_s(host))
        if not await self._verify_address.try_acquire(str(address)):
            raise RateLimited(await self._verify_address.retry_after_s(str(address)))
        await self._verifier.start(address)

    async def register(
        self,
        *,
        address_text: str,
        code: str,
        password: str,
        registration_id: int,
        device_name: str | None,
        client_key: str | None,
    ) -> AccountId:
        """Register (or re-register) an address; its device 1 gets ``password``.

        Raises:
            Refused: Invalid input, wrong client key, rate limited or ``invalid_code``.
        """
        address = self.parse(address_text)
        self._check_app_key(address, client_key)
        try:
            decode_password(password)
        except WireError as exc:
            raise Refused(exc.code, exc.message) from None
        if not await self._register_address.try_acquire(str(address)):
            raise RateLimited(await self._register_address.retry_after_s(str(address)))
        if not await self._verifier.check(address, code):
            raise Refused(ErrorCode.INVALID_CODE, "the verification code is wrong or expired")
        salt = self._rng.token_bytes(16)
        device = NewDevice(device_name, registration_id, salt, hash_password(salt, password))
        account_id = await self._store.register(
            address,
            new_account_id=new_account_id(self._rng),
            device=device,
            now=self._clock.now_ms(),
        )
        # re-registration replaced every device: old connections must not receive new mail
        # (at once, before any await: a connection made meanwhile has the new credentials)
        self._revoker.revoke_account(account_id)
        # codes made by the replaced devices must not add devices to the new registration
        await self._codes.discard_owner(_LINK, account_id)
        return account_id

    async def authenticate(self, header: str | None, host: str) -> AuthedDevice:
        """Check a device's ``Authorization`` header.

        Raises:
            RateLimited: This host failed too often recently.
            Refused: ``unauthorized``.
        """
        if not await self._failed_auth.allowed(host):
            raise RateLimited(await self._failed_auth.retry_after_s(host))
        bad = Refused(ErrorCode.UNAUTHORIZED, "invalid credentials")
        if not header:
            raise Refused(ErrorCode.UNAUTHORIZED, "credentials required")
        try:
            creds = parse_basic_auth(header)
        except WireError:
            await self._failed_auth.consume(host)
            raise bad from None
        ref = DeviceRef(AccountId(creds.account_id), DeviceId(creds.device_id))
        device = await self._store.get_device(ref.account_id, ref.device_id)
        account = await self._store.get_account(ref.account_id) if device else None
        if device is None or account is None:
            verify_password(_DUMMY_SALT, creds.password, _DUMMY_HASH)  # same work either way
            await self._failed_auth.consume(host)
            raise bad
        if not verify_password(device.salt, creds.password, device.password_hash):
            await self._failed_auth.consume(host)
            raise bad
        return AuthedDevice(ref, account.address, device.salt)

    async def create_link_code(self, device: AuthedDevice) -> tuple[str, int]:
        """Make a single-use code (valid 10 minutes) that links one new device.

        The code (144 random bits) is kept only as digests in the shared code store, so any
        node redeems it. An account holds at most 10 unused codes; making another drops
        the oldest.

        Raises:
            Refused: ``forbidden`` unless called by the primary device.
        """
        if device.device_id != PRIMARY_DEVICE:
            raise Refused(ErrorCode.FORBIDDEN, "only the primary device links devices")
        now = self._clock.now_ms()
        code = encode_password(self._rng.token_bytes(18))
        expires = now + _LINK_CODE_TTL_MS
        subject = subject_digest(_LINK, code)
        pending = PendingCode(
            _LINK, subject, code_digest(_LINK, subject, code), device.account_id, now, expires
        )
        await self._codes.issue(pending, max_per_owner=_MAX_LINK_CODES_PER_ACCOUNT)
        return code, expires

    async def link_device(
        self,
        *,
        code: str,
        password: str,
        registration_id: int,
        device_name: str | None,
        host: str,
    ) -> tuple[AccountId, DeviceId]:
        """Create a linked device with a code from :meth:`create_link_code`.

        Raises:
            Refused: ``invalid_request`` (password), ``invalid_code``, ``too_many_devices``,
                or ``rate_limited`` after too many wrong codes from this host.
        """
        try:
            decode_password(password)
        except WireError as exc:
            raise Refused(exc.code, exc.message) from None
        if not await self._failed_auth.allowed(host):
            raise RateLimited(await self._failed_auth.retry_after_s(host))
        subject = subject_digest(_LINK, code)
        # a link code is looked up by its own digest: a wrong one finds nothing (guessing is
        # limited per host by the failed-auth limit), so one attempt is all there is
        redeemed = await self._codes.redeem(
            _LINK,
            subject,
            code_digest(_LINK, subject, code),
            now=self._clock.now_ms(),
            max_attempts=1,
        )
        if redeemed is None or redeemed.owner is None:
            await self._failed_auth.consume(host)
            raise Refused(ErrorCode.INVALID_CODE, "the link code is wrong, used or expired")
        account_id = redeemed.owner
        salt = self._rng.token_bytes(16)
        device = NewDevice(device_name, registration_id, salt, hash_password(salt, password))
        try:
            device_id = await self._store.add_device(
                account_id, device, now=self._clock.now_ms(), max_devices=self._max_devices
            )
        except TooManyDevices:
            raise Refused(
                ErrorCode.TOO_MANY_DEVICES, f"an account has at most {self._max_devices} devices"
            ) from None
        except UnknownDevice:
            raise Refused(ErrorCode.INVALID_CODE, "the account no longer exists") from None
        return account_id, device_id

    async def remove_device(self, caller: AuthedDevice, device_id: DeviceId) -> None:
        """Remove a linked device (the primary removes any, a linked device only itself).

        Raises:
            Refused: ``forbidden`` (the primary, or another device by a linked one),
                ``not_found``.
        """
        if device_id == PRIMARY_DEVICE:
            raise Refused(ErrorCode.FORBIDDEN, "the primary device cannot be removed")
        if caller.device_id not in (PRIMARY_DEVICE, device_id):
            raise Refused(ErrorCode.FORBIDDEN, "only the primary device removes other devices")
        if not await self._store.remove_device(caller.account_id, device_id):
            raise Refused(ErrorCode.NOT_FOUND, "no such device")
        self._revoker.revoke_device(DeviceRef(caller.account_id, device_id))

    async def revoked(self, devices: Sequence[AuthedDevice]) -> list[AuthedDevice]:
        """Those of ``devices`` (authenticated earlier) whose credentials are no longer
        valid: the device was removed, or re-created by a re-registration of its account.

        Nodes call this for their live connections when they may have missed a revocation
        (docs/deployment.md, "Revocations"). One read per account.
        """
        by_account: dict[AccountId, list[AuthedDevice]] = {}
        for device in devices:
            by_account.setdefault(device.account_id, []).append(device)
        gone: list[AuthedDevice] = []
        for account_id, mine in by_account.items():
            current = {d.device_id: d.salt for d in await self._store.list_devices(account_id)}
            for device in mine:
                salt = current.get(device.device_id)
                if salt is None or (device.credential and salt != device.credential):
                    gone.append(device)
        return gone

    async def account(self, account_id: AccountId) -> AccountRecord | None:
        """Return an account, or ``None``."""
        return await self._store.get_account(account_id)

    async def devices(self, account_id: AccountId) -> list[DeviceRecord]:
        """Return the devices of an account."""
        return await self._store.list_devices(account_id)

    async def directory(
        self, caller: AuthedDevice, address_texts: Sequence[str]
    ) -> list[DirectoryHit]:
        """Resolve addresses; invalid and unregistered ones are left out.

        The results follow the order of first appearance of each normalised address.

        Raises:
            RateLimited: The caller's account looked up too often recently (limits
                enumeration of the directory).
        """
        key = str(caller.account_id)
        if not await self._directory.try_acquire(key):
            raise RateLimited(await self._directory.retry_after_s(key))
        addresses: list[Address] = []
        for text in address_texts:
            try:
                address = parse_address(text, self._kinds)
            except AddressError:
                continue
            if address not in addresses:
                addresses.append(address)
        found = await self._store.lookup(addresses)
        return [DirectoryHit(a, *found[a]) for a in addresses if a in found]
