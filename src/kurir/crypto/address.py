"""The name of one device of one peer, as the Signal protocol layer sees it.

Owns: `ProtocolAddress` and `DeviceId`. The protocol layer treats the name as an opaque string
(kurir's client uses the peer account's UUID); it must not know about apps or identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from kurir.crypto.errors import InvalidArgumentError

DeviceId = NewType("DeviceId", int)
"""A device number within one account: 1 is the primary device; libsignal allows 1..127."""

MAX_DEVICE_ID = 127


@dataclass(frozen=True, slots=True, order=True)
class ProtocolAddress:
    """One device of one peer.

    Attributes:
        name: the peer's stable name (kurir uses the account UUID as text).
        device_id: the device number, 1..127.
    """

    name: str
    device_id: DeviceId

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidArgumentError("address name must not be empty")
        if not 1 <= self.device_id <= MAX_DEVICE_ID:
            raise InvalidArgumentError(f"device id must be 1..{MAX_DEVICE_ID}")

    def __str__(self) -> str:
        return f"{self.name}.{self.device_id}"
