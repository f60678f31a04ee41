"""Keys: uploads, one-time key counts and prekey bundle hand-out.

This module owns the rules around a device's published keys (PQXDH §3.2: identity key,
signed prekey, signed last-resort PQ prekey, one-time EC and PQ prekeys) and the per-caller
rate limit on bundle fetches. It never interprets key bytes: the server cannot and need not
verify signatures that clients check themselves.
"""

from __future__ import annotations

from kurir.server.errors import RateLimited, Refused
from kurir.server.services.accounts import AuthedDevice
from kurir.server.shared_limits import Limiter
from kurir.server.storage.errors import IdentityKeyChanged, KeysNotSet, UnknownDevice
from kurir.server.storage.protocols import KeyStore
from kurir.server.storage.records import KeyBundle, KeyCounts, KeyUpdate
from kurir.server.types import AccountId, DeviceId
from kurir.wire.errors import ErrorCode

__all__ = ["KeyService"]


class KeyService:
    """Publishes and hands out keys.

    Args:
        store: The key store.
        bundle_limiter: Rate limiter of bundle fetches, keyed per calling account.
    """

    def __init__(self, store: KeyStore, bundle_limiter: Limiter) -> None:
        self._store = store
        self._bundles = bundle_limiter

    async def upload(self, device: AuthedDevice, update: KeyUpdate) -> None:
        """Apply a key upload of the calling device.

        Raises:
            Refused: ``identity_key_changed``, ``keys_not_set`` or ``unauthorized`` (the
                device vanished by re-registration meanwhile).
        """
        try:
            await self._store.update_keys(device.account_id, device.device_id, update)
        except IdentityKeyChanged:
            raise Refused(
                ErrorCode.IDENTITY_KEY_CHANGED,
                "the identity key can only change by re-registering",
            ) from None
        except KeysNotSet:
            raise Refused(
                ErrorCode.KEYS_NOT_SET,
                "the first upload needs identity_key, signed_prekey and pq_last_resort_prekey",
            ) from None
        except UnknownDevice:
            raise Refused(ErrorCode.UNAUTHORIZED, "device no longer exists") from None

    async def counts(self, device: AuthedDevice) -> KeyCounts:
        """Return the calling device's remaining one-time prekeys."""
        return await self._store.count_one_time(device.account_id, device.device_id)

    async def bundle(
        self, caller: AuthedDevice, account_id: AccountId, device_id: DeviceId | None
    ) -> KeyBundle:
        """Hand out a prekey bundle of another (or the caller's own) account.

        Raises:
            RateLimited: The caller fetched too many bundles recently.
            Refused: ``not_found`` when the account or device has no published keys.
        """
        key = str(caller.account_id)
        if not await self._bundles.try_acquire(key):
            raise RateLimited(await self._bundles.retry_after_s(key))
        bundle = await self._store.take_bundle(account_id, device_id)
        if bundle is None:
            raise Refused(ErrorCode.NOT_FOUND, "no keys for that account or device")
        return bundle
