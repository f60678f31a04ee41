"""The in-memory reference storage engine.

This module owns the reference semantics of the storage Protocols: plain dictionaries, no
I/O, every method atomic because it never awaits. Tests use it directly; the conformance
suite holds every other engine to its behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from kurir.server.storage.codes_memory import MemoryCodeStore
from kurir.server.storage.errors import (
    IdentityKeyChanged,
    KeysNotSet,
    MailboxFull,
    TooManyDevices,
    UnknownDevice,
)
from kurir.server.storage.groups_memory import MemoryGroupStore
from kurir.server.storage.metadata_memory import MemoryMetadataStore
from kurir.server.storage.protocols import Storage
from kurir.server.storage.records import (
    RECEIPT_TYPE,
    AccountRecord,
    DeviceKeys,
    DeviceRecord,
    Enqueued,
    KeyBundle,
    KeyCounts,
    KeyUpdate,
    NewDevice,
    OneTimeKey,
    OutgoingEnvelope,
    SendCount,
    SignedKey,
    StoredEnvelope,
    receipt_dedupe_key,
)
from kurir.server.types import PRIMARY_DEVICE, AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

__all__ = ["MemoryEngine"]


@dataclass
class _Mailbox:
    last_seq: int = 0
    expired: int = 0
    # seq -> (envelope, dedupe key, expires_at); dicts keep insertion (= seq) order
    envelopes: dict[int, tuple[StoredEnvelope, bytes, int]] = field(default_factory=dict)
    queued: dict[bytes, int] = field(default_factory=dict)
    delivered: dict[bytes, int] = field(default_factory=dict)  # dedupe key -> expires_at


@dataclass
class _DeviceKeys:
    signed: SignedKey | None = None
    last_resort: SignedKey | None = None
    one_time: dict[int, OneTimeKey] = field(default_factory=dict)
    pq_one_time: dict[int, SignedKey] = field(default_factory=dict)


@dataclass
class _State:
    accounts: dict[AccountId, AccountRecord] = field(default_factory=dict)
    by_address: dict[Address, AccountId] = field(default_factory=dict)
    devices: dict[DeviceRef, DeviceRecord] = field(default_factory=dict)
    keys: dict[DeviceRef, _DeviceKeys] = field(default_factory=dict)
    mailboxes: dict[DeviceRef, _Mailbox] = field(default_factory=dict)
    last_device_id: dict[AccountId, int] = field(default_factory=dict)

    def devices_of(self, account_id: AccountId) -> list[DeviceRecord]:
        refs = sorted(r for r in self.devices if r.account_id == account_id)
        return [self.devices[r] for r in refs]

    def drop_device(self, ref: DeviceRef) -> None:
        self.devices.pop(ref, None)
        self.keys.pop(ref, None)
        self.mailboxes.pop(ref, None)


class _Accounts:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def register(
        self, address: Address, *, new_account_id: AccountId, device: NewDevice, now: int
    ) -> AccountId:
        s = self._s
        account_id = s.by_address.get(address)
        if account_id is None:
            account_id = new_account_id
            s.accounts[account_id] = AccountRecord(account_id, address, None, now)
            s.by_address[address] = account_id
        else:
            for old in s.devices_of(account_id):
                s.drop_device(DeviceRef(old.account_id, old.device_id))
            s.accounts[account_id] = replace(s.accounts[account_id], identity_key=None)
        s.last_device_id[account_id] = PRIMARY_DEVICE
        self._create(account_id, PRIMARY_DEVICE, device, now)
        return account_id

    def _create(
        self, account_id: AccountId, device_id: DeviceId, device: NewDevice, now: int
    ) -> None:
        s = self._s
        ref = DeviceRef(account_id, device_id)
        s.devices[ref] = DeviceRecord(
            account_id,
            device_id,
            device.name,
            device.registration_id,
            device.salt,
            device.password_hash,
            now,
        )
        s.keys[ref] = _DeviceKeys()
        s.mailboxes[ref] = _Mailbox()

    async def add_device(
        self, account_id: AccountId, device: NewDevice, *, now: int, max_devices: int
    ) -> DeviceId:
        s = self._s
        if account_id not in s.accounts:
            raise UnknownDevice("no such account")
        if len(s.devices_of(account_id)) >= max_devices:
            raise TooManyDevices("the account has the maximum number of devices")
        device_id = DeviceId(s.last_device_id[account_id] + 1)
        s.last_device_id[account_id] = device_id
        self._create(account_id, device_id, device, now)
        return device_id

    async def remove_device(self, account_id: AccountId, device_id: DeviceId) -> bool:
        ref = DeviceRef(account_id, device_id)
        if device_id == PRIMARY_DEVICE or ref not in self._s.devices:
            return False
        self._s.drop_device(ref)
        return True

    async def get_account(self, account_id: AccountId) -> AccountRecord | None:
        return self._s.accounts.get(account_id)

    async def get_device(self, account_id: AccountId, device_id: DeviceId) -> DeviceRecord | None:
        return self._s.devices.get(DeviceRef(account_id, device_id))

    async def list_devices(self, account_id: AccountId) -> list[DeviceRecord]:
        return self._s.devices_of(account_id)

    async def lookup(
        self, addresses: Sequence[Address]
    ) -> dict[Address, tuple[AccountId, list[DeviceId]]]:
        found: dict[Address, tuple[AccountId, list[DeviceId]]] = {}
        for address in addresses:
            account_id = self._s.by_address.get(address)
            if account_id is not None:
                devices = [d.device_id for d in self._s.devices_of(account_id)]
                found[address] = (account_id, devices)
        return found


class _Keys:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def update_keys(
        self, account_id: AccountId, device_id: DeviceId, update: KeyUpdate
    ) -> None:
        s = self._s
        ref = DeviceRef(account_id, device_id)
        keys = s.keys.get(ref)
        if keys is None or ref not in s.devices:
            raise UnknownDevice("no such device")
        account = s.accounts[account_id]
        identity = account.identity_key
        if update.identity_key is not None:
            if identity is not None and identity != update.identity_key:
                raise IdentityKeyChanged("identity key differs from the registered one")
            identity = update.identity_key
        signed = update.signed_prekey or keys.signed
        last_resort = update.pq_last_resort or keys.last_resort
        if identity is None or signed is None or last_resort is None:
            raise KeysNotSet("identity key, signed prekey and last-resort PQ prekey are required")
        s.accounts[account_id] = replace(account, identity_key=identity)
        keys.signed = signed
        keys.last_resort = last_resort
        if update.one_time is not None:
            keys.one_time = {k.key_id: k for k in update.one_time}
        if update.pq_one_time is not None:
            keys.pq_one_time = {k.key_id: k for k in update.pq_one_time}

    async def count_one_time(self, account_id: AccountId, device_id: DeviceId) -> KeyCounts:
        keys = self._s.keys.get(DeviceRef(account_id, device_id))
        if keys is None:
            return KeyCounts(0, 0)
        return KeyCounts(len(keys.one_time), len(keys.pq_one_time))

    async def take_bundle(
        self, account_id: AccountId, device_id: DeviceId | None
    ) -> KeyBundle | None:
        s = self._s
        account = s.accounts.get(account_id)
        if account is None or account.identity_key is None:
            return None
        devices = s.devices_of(account_id)
        if device_id is not None:
            devices = [d for d in devices if d.device_id == device_id]
        handed: list[DeviceKeys] = []
        for device in devices:
            keys = s.keys[DeviceRef(account_id, device.device_id)]
            if keys.signed is None or keys.last_resort is None:
                continue
            prekey = keys.one_time.pop(min(keys.one_time)) if keys.one_time else None
            if keys.pq_one_time:
                pq, last = keys.pq_one_time.pop(min(keys.pq_one_time)), False
            else:
                pq, last = keys.last_resort, True
            handed.append(
                DeviceKeys(device.device_id, device.registration_id, keys.signed, prekey, pq, last)
            )
        if not handed:
            return None
        return KeyBundle(account.identity_key, tuple(handed))


class _Mailboxes:
    def __init__(self, state: _State, metadata: MemoryMetadataStore) -> None:
        self._s = state
        self._metadata = metadata

    def _box(self, account_id: AccountId, device_id: DeviceId) -> _Mailbox | None:
        return self._s.mailboxes.get(DeviceRef(account_id, device_id))

    async def enqueue(
        self,
        envelopes: Sequence[OutgoingEnvelope],
        *,
        now: int,
        expires_at: int,
        cap: int,
        count: SendCount | None = None,
    ) -> Enqueued:
        queued = self._enqueue(envelopes, now=now, expires_at=expires_at, cap=cap)
        if queued and count is not None:
            # never suspends: the counts land in the same step as the envelopes
            await self._metadata.record_send(
                count.sender, count.recipient, recipient_state=count.recipient_state, now=now
            )
        return queued

    def _enqueue(
        self, envelopes: Sequence[OutgoingEnvelope], *, now: int, expires_at: int, cap: int | None
    ) -> Enqueued:
        todo: list[tuple[_Mailbox, DeviceRef, OutgoingEnvelope]] = []
        added: dict[DeviceRef, int] = {}
        full: list[DeviceRef] = []
        for env in envelopes:
            ref = DeviceRef(env.account_id, env.device_id)
            box = self._s.mailboxes.get(ref)
            if box is None:
                raise UnknownDevice("no such recipient device")
            key = env.dedupe_key
            if key in box.queued or box.delivered.get(key, -1) > now:
                continue
            if any(e.dedupe_key == key and r == ref for _, r, e in todo):
                continue
            if cap is not None and len(box.envelopes) + added.get(ref, 0) >= cap:
                if ref not in full:
                    full.append(ref)
                continue
            added[ref] = added.get(ref, 0) + 1
            todo.append((box, ref, env))
        if full:
            raise MailboxFull(full)
        queued: dict[DeviceRef, list[StoredEnvelope]] = {}
        for box, ref, env in todo:
            box.last_seq += 1
            stored = StoredEnvelope(
                box.last_seq,
                env.type,
                env.source,
                env.source_device,
                env.source_address,
                env.message_id,
                env.timestamp,
                now,
                env.body,
            )
            box.envelopes[box.last_seq] = (stored, env.dedupe_key, expires_at)
            box.queued[env.dedupe_key] = box.last_seq
            queued.setdefault(ref, []).append(stored)
        return Enqueued(queued, queued)

    async def fetch(
        self, account_id: AccountId, device_id: DeviceId, *, after_seq: int, limit: int, now: int
    ) -> list[StoredEnvelope]:
        box = self._box(account_id, device_id)
        if box is None:
            return []
        out: list[StoredEnvelope] = []
        for seq, (env, _, expires_at) in box.envelopes.items():
            if seq > after_seq and expires_at > now:
                out.append(env)
                if len(out) >= limit:
                    break
        return out

    async def last_seq(self, account_id: AccountId, device_id: DeviceId) -> int:
        box = self._box(account_id, device_id)
        return 0 if box is None else box.last_seq

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
        box = self._box(account_id, device_id)
        if box is None:
            return Enqueued()
        receipts: list[OutgoingEnvelope] = []
        for seq in seqs:
            entry = box.envelopes.pop(seq, None)
            if entry is None:
                continue
            env, key, env_expiry = entry
            del box.queued[key]
            box.delivered[key] = env_expiry
            if env.source is None or env.source_device is None or env.type == RECEIPT_TYPE:
                continue
            if DeviceRef(env.source, env.source_device) not in self._s.devices:
                continue
            receipts.append(
                OutgoingEnvelope(
                    env.source,
                    env.source_device,
                    receipt_dedupe_key(env.message_id, account_id.bytes, device_id),
                    RECEIPT_TYPE,
                    account_id,
                    device_id,
                    receipt_source_address,
                    env.message_id,
                    env.timestamp,
                    b"",
                )
            )
        return self._enqueue(receipts, now=now, expires_at=expires_at, cap=None)

    async def expire(self, now: int) -> int:
        deleted = 0
        for box in self._s.mailboxes.values():
            for seq, (_, key, expires_at) in list(box.envelopes.items()):
                if expires_at <= now:
                    del box.envelopes[seq]
                    del box.queued[key]
                    box.expired += 1
                    deleted += 1
            for key, expires_at in list(box.delivered.items()):
                if expires_at <= now:
                    del box.delivered[key]
        return deleted

    async def take_expired_count(self, account_id: AccountId, device_id: DeviceId) -> int:
        box = self._box(account_id, device_id)
        if box is None:
            return 0
        count, box.expired = box.expired, 0
        return count


class MemoryEngine:
    """The in-memory engine; state lives as long as the object."""

    def __init__(self) -> None:
        state = _State()
        metadata = MemoryMetadataStore()
        accounts, mailboxes = _Accounts(state), _Mailboxes(state, metadata)
        groups = MemoryGroupStore(accounts, mailboxes)
        self._storage = Storage(
            accounts, _Keys(state), mailboxes, groups, metadata, codes=MemoryCodeStore()
        )

    @property
    def storage(self) -> Storage:
        """The stores."""
        return self._storage

    async def close(self) -> None:
        """Nothing to release."""
