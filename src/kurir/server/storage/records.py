"""Values the stores take and return: frozen, typed, free of transport concerns.

Keys here are opaque bytes (the server never interprets them); envelope bodies are
ciphertext the server cannot read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from kurir.server.storage.metadata_records import ConversationState
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.wire.address import Address

__all__ = [
    "AccountRecord",
    "DeviceKeys",
    "DeviceRecord",
    "Enqueued",
    "KeyBundle",
    "KeyCounts",
    "KeyUpdate",
    "NewDevice",
    "OneTimeKey",
    "OutgoingEnvelope",
    "SendCount",
    "SignedKey",
    "StoredEnvelope",
]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A registered account."""

    account_id: AccountId
    address: Address
    identity_key: bytes | None
    created_at: int


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device about to be created; the password is already hashed."""

    name: str | None
    registration_id: int
    salt: bytes = field(repr=False)
    password_hash: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device of an account, with its credential hash."""

    account_id: AccountId
    device_id: DeviceId
    name: str | None
    registration_id: int
    salt: bytes = field(repr=False)
    password_hash: bytes = field(repr=False)
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class SignedKey:
    """A signed prekey (EC or KEM): id, public key, signature by the identity key."""

    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class OneTimeKey:
    """A one-time EC prekey."""

    key_id: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """One key upload of one device. ``None`` parts are left as they are; a given
    one-time tuple replaces the stored one-time keys of that kind."""

    identity_key: bytes | None = None
    signed_prekey: SignedKey | None = None
    pq_last_resort: SignedKey | None = None
    one_time: tuple[OneTimeKey, ...] | None = None
    pq_one_time: tuple[SignedKey, ...] | None = None


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """One-time prekeys left for a device."""

    ec: int
    pq: int


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """The keys handed out for one device; the one-time keys were taken (deleted)."""

    device_id: DeviceId
    registration_id: int
    signed_prekey: SignedKey
    prekey: OneTimeKey | None
    pq_prekey: SignedKey
    pq_is_last_resort: bool


@dataclass(frozen=True, slots=True)
class KeyBundle:
    """The identity key of an account and the keys of the requested devices."""

    identity_key: bytes
    devices: tuple[DeviceKeys, ...]


class OutgoingEnvelope(NamedTuple):
    """An envelope to put in one device's mailbox.

    ``dedupe_key`` makes enqueueing idempotent per recipient device: the client message id
    for client messages, a longer derived key for server-made receipts.

    A named tuple rather than a frozen dataclass, as :class:`StoredEnvelope`: every message
    makes one, and a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` in Python (about three times the cost).
    """

    account_id: AccountId
    device_id: DeviceId
    dedupe_key: bytes
    type: int
    source: AccountId | None
    source_device: DeviceId | None
    source_address: str | None
    message_id: bytes
    timestamp: int
    body: bytes

    def __repr__(self) -> str:
        return f"OutgoingEnvelope(to={self.account_id}/{self.device_id}, type={self.type})"


class StoredEnvelope(NamedTuple):
    """An envelope in a mailbox, with its per-device sequence number.

    A named tuple (immutable, built in C): every delivered message makes two, its own and
    its receipt's.
    """

    seq: int
    type: int
    source: AccountId | None
    source_device: DeviceId | None
    source_address: str | None
    message_id: bytes
    timestamp: int
    server_timestamp: int
    body: bytes

    def __repr__(self) -> str:
        return f"StoredEnvelope(seq={self.seq}, type={self.type})"


class Enqueued(list[DeviceRef]):
    """What an enqueue committed: the devices that got a new envelope, in first-enqueue order
    (it *is* that list), and the new envelopes themselves with their seqs.

    ``envelopes`` maps each device to its new envelopes in seq order. An engine that does not
    report them leaves it empty; the connections then read the mailbox (a wake-up), which is
    always correct. The connection registry hands reported envelopes straight to a live
    connection (no mailbox read), see :mod:`kurir.server.ws`.
    """

    __slots__ = ("envelopes",)

    def __init__(
        self,
        devices: Iterable[DeviceRef] = (),
        envelopes: Mapping[DeviceRef, Sequence[StoredEnvelope]] | None = None,
    ) -> None:
        super().__init__(devices)
        self.envelopes: Mapping[DeviceRef, Sequence[StoredEnvelope]] = (
            {} if envelopes is None else envelopes
        )


@dataclass(frozen=True, slots=True)
class SendCount:
    """The per-conversation counts of one 1:1 send, written in the enqueue's transaction
    (``MetadataStore.record_send`` semantics) when the enqueue added at least one envelope.
    """

    sender: AccountId
    recipient: AccountId
    recipient_state: ConversationState


RECEIPT_TYPE = 5
"""Envelope type of a server delivery receipt (Signal's SERVER_DELIVERY_RECEIPT)."""


def receipt_dedupe_key(message_id: bytes, acker_account: bytes, acker_device: DeviceId) -> bytes:
    """The dedupe key of the receipt for ``message_id`` acknowledged by one device, whose
    account id's 16 bytes are ``acker_account``.

    Longer than any client message id, so it never collides with one.
    """
    return b"r" + message_id + acker_account + acker_device.to_bytes(4, "big")
