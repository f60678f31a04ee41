"""The storage Protocols: accounts/devices, keys, mailboxes.

This module owns the contracts every engine (memory, SQLite, later PostgreSQL) fulfils and the
conformance suite checks. Each method is one transaction. Every row is keyed by account id
first so the data can be sharded by account. The stores know nothing of HTTP, WebSockets or
cryptography.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kurir.server.storage.codes import CodeStore
from kurir.server.storage.groups import GroupStore
from kurir.server.storage.metadata_protocols import MetadataStore
from kurir.server.storage.records import (
    AccountRecord,
    DeviceRecord,
    Enqueued,
    KeyBundle,
    KeyCounts,
    KeyUpdate,
    NewDevice,
    OutgoingEnvelope,
    SendCount,
    StoredEnvelope,
)
from kurir.server.types import AccountId, DeviceId
from kurir.wire.address import Address

__all__ = ["AccountStore", "KeyStore", "MailboxStore", "Storage", "StorageEngine"]


class AccountStore(Protocol):
    """Accounts and their devices."""

    async def register(
        self, address: Address, *, new_account_id: AccountId, device: NewDevice, now: int
    ) -> AccountId:
        """Register ``address`` with ``device`` as its primary device (id 1).

        If the address is already registered, the account keeps its id but loses every
        device (with their keys and mailboxes) and its identity key, then gets ``device`` as
        device 1 (Signal-style re-registration). Otherwise a new account ``new_account_id``
        is created.

        Returns:
            The account id now bound to ``address``.
        """
        ...

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        """Return the account, or ``None``."""
        ...

    async def get_device(self, account_id: AccountId, device_id: DeviceId) -> DeviceRecord | None:
        """Return one device, or ``None``."""
        ...

    async def list_devices(self, account_id: AccountId) -> list[DeviceRecord]:
        """Return the devices of an account in id order (empty if unknown)."""
        ...

    async def add_device(
        self, account_id: AccountId, device: NewDevice, *, now: int, max_devices: int
    ) -> DeviceId:
        """Link a new device to an existing account; its id is one more than the highest
        id the account ever used (ids are never reused).

        Raises:
            UnknownDevice: The account does not exist.
            TooManyDevices: The account already has ``max_devices`` devices.
        """
        ...

    async def remove_device(self, account_id: AccountId, device_id: DeviceId) -> bool:
        """Remove a device with its keys and mailbox. The primary device cannot be removed.

        Returns:
            Whether a device was removed.
        """
        ...

    async def lookup(
        self, addresses: Sequence[Address]
    ) -> dict[Address, tuple[AccountId, list[DeviceId]]]:
        """Resolve registered addresses to account ids and device ids; unknown ones are absent."""
        ...


class KeyStore(Protocol):
    """Identity keys and prekeys."""

    async def update_keys(
        self, account_id: AccountId, device_id: DeviceId, update: KeyUpdate
    ) -> None:
        """Apply one key upload atomically.

        Raises:
            UnknownDevice: No such device.
            IdentityKeyChanged: ``update.identity_key`` differs from the stored one.
            KeysNotSet: After this upload the device would lack a signed prekey or a
                last-resort PQ prekey, or the account an identity key.
        """
        ...

    async def count_one_time(self, account_id: AccountId, device_id: DeviceId) -> KeyCounts:
        """Count the device's remaining one-time EC and PQ prekeys."""
        ...

    async def take_bundle(
        self, account_id: AccountId, device_id: DeviceId | None
    ) -> KeyBundle | None:
        """Hand out keys for one device (or every device with keys when ``device_id`` is None).

        One one-time EC prekey and one one-time PQ prekey per device are taken atomically
        (deleted); without PQ one-time prekeys the last-resort PQ prekey is given.

        Returns:
            ``None`` when the account has no identity key or no requested device has keys.
        """
        ...


class MailboxStore(Protocol):
    """Per-device durable envelope queues."""

    async def enqueue(
        self,
        envelopes: Sequence[OutgoingEnvelope],
        *,
        now: int,
        expires_at: int,
        cap: int,
        count: SendCount | None = None,
    ) -> Enqueued:
        """Enqueue all envelopes atomically, idempotent on (recipient device, dedupe key).

        An envelope whose dedupe key is queued, or was acknowledged and its record has not
        expired yet, is not enqueued again. When ``count`` is given and at least one envelope
        was added, the conversation counts are written in the same transaction
        (``MetadataStore.record_send``), so a crash can neither lose nor double them.

        Returns:
            The devices that received a new envelope (to wake their connections), with the
            new envelopes and their seqs where the engine reports them (:class:`Enqueued`).

        Raises:
            UnknownDevice: A recipient device does not exist; nothing was enqueued.
            MailboxFull: A recipient mailbox holds ``cap`` envelopes; nothing was enqueued.
        """
        ...

    async def fetch(
        self, account_id: AccountId, device_id: DeviceId, *, after_seq: int, limit: int, now: int
    ) -> list[StoredEnvelope]:
        """Return up to ``limit`` unexpired envelopes with ``seq > after_seq`` in seq order."""
        ...

    async def last_seq(self, account_id: AccountId, device_id: DeviceId) -> int:
        """Return the highest seq ever assigned in this mailbox (0 if none)."""
        ...

    async def acknowledge(
        self,
        account_id: AccountId,
        device_id: DeviceId,
        seqs: Sequence[int],
        *,
        now: int,
        expires_at: int,
        receipt_source_address: str | None,
    ) -> Enqueued:
        """Delete acknowledged envelopes and, in the same transaction, enqueue a delivery
        receipt (type 5) to the sender device of each that has a known sender and is not
        itself a receipt. Unknown seqs are ignored. Receipts are not refused by the cap.

        Returns:
            The devices that received a receipt, with the receipts (:class:`Enqueued`).
        """
        ...

    async def expire(self, now: int) -> int:
        """Delete envelopes and delivery records whose expiry has passed; count, per device,
        the expired envelopes (reported by :meth:`take_expired_count`).

        Returns:
            The number of envelopes deleted.
        """
        ...

    async def take_expired_count(self, account_id: AccountId, device_id: DeviceId) -> int:
        """Return and reset the number of this device's envelopes that expired unread."""
        ...


@dataclass(frozen=True, slots=True)
class Storage:
    """The three stores of one engine."""

    accounts: AccountStore
    keys: KeyStore
    mailboxes: MailboxStore
    groups: GroupStore | None = None
    """Groups (issue 6); ``None`` for an engine that has no group tables yet."""
    metadata: MetadataStore | None = None
    """Blocks, settings, conversations, contacts, profiles, push (issue 5); ``None`` for an
    engine without the tables of migration 0004 (the server then keeps them in memory)."""
    codes: CodeStore | None = None
    """Pending verification and device-link codes (issue 7, migration 0005), shared by every
    node of the engine; ``None`` for an engine without them (the server keeps them in memory,
    which only works for a single node)."""


class StorageEngine(Protocol):
    """An opened engine: its stores and how to close it."""

    @property
    def storage(self) -> Storage:
        """The stores."""
        ...

    async def close(self) -> None:
        """Flush and release everything; the stores are unusable afterwards."""
        ...
