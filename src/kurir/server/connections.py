"""The registry of live device connections on this node.

This module owns "one connection per device": attaching a second connection of a device
replaces the first, :meth:`ConnectionRegistry.wake` reaches a device's connection after
its mailbox changed, :meth:`ConnectionRegistry.hand_off` gives it the just-committed
envelopes themselves (a :class:`Receiver` sends them without reading the mailbox), and
re-registration revokes all connections of the account. It knows nothing of WebSockets:
connections are :class:`Attachable`.
(Cross-node routing will publish wake-ups through Redis; this is the single-node part.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from kurir.server.storage.records import Enqueued, StoredEnvelope
from kurir.server.types import AccountId, DeviceRef

__all__ = ["Attachable", "ConnectionRegistry", "Receiver"]


class Attachable(Protocol):
    """What the registry needs of a connection."""

    def wake(self) -> None:
        """The mailbox has new envelopes."""
        ...

    def replace(self) -> None:
        """A newer connection of the same device took over; close with 4001."""
        ...

    def revoke(self) -> None:
        """The device's credentials are no longer valid (re-registration); close with 4003."""
        ...


@runtime_checkable
class Receiver(Protocol):
    """A connection that takes committed envelopes directly."""

    def deliver(self, envelopes: Sequence[StoredEnvelope]) -> None:
        """``envelopes`` (one device's, in seq order) were committed to its mailbox: send
        them, or read the mailbox instead if they do not follow what was sent."""
        ...


class ConnectionRegistry:
    """Live connections by device; implements the services' ``Courier`` (``wake`` and
    ``hand_off``)."""

    def __init__(self) -> None:
        self._live: dict[DeviceRef, Attachable] = {}
        self._receivers: dict[DeviceRef, Receiver] = {}

    def attach(self, device: DeviceRef, connection: Attachable) -> None:
        """Make ``connection`` the device's connection, replacing any older one."""
        old = self._live.get(device)
        self._live[device] = connection
        if isinstance(connection, Receiver):
            self._receivers[device] = connection
        else:
            self._receivers.pop(device, None)
        if old is not None and old is not connection:
            old.replace()

    def detach(self, device: DeviceRef, connection: Attachable) -> None:
        """Forget ``connection`` unless a newer one already replaced it."""
        if self._live.get(device) is connection:
            del self._live[device]
            self._receivers.pop(device, None)

    def hand_off(self, queued: Enqueued) -> None:
        """Give each device's new envelopes to its connection here (a :class:`Receiver`),
        or wake it; devices not connected here are left to their next connection."""
        live, receivers, envelopes = self._live, self._receivers, queued.envelopes
        for device in queued:
            receiver = receivers.get(device)
            mine = envelopes.get(device)
            if receiver is not None and mine:
                receiver.deliver(mine)
            else:
                connection = live.get(device)
                if connection is not None:
                    connection.wake()

    def wake(self, device: DeviceRef) -> None:
        """Wake the device's connection, if it is connected here."""
        connection = self._live.get(device)
        if connection is not None:
            connection.wake()

    def revoke_account(self, account_id: AccountId) -> None:
        """Close every connection of the account (its devices were replaced)."""
        for device in [d for d in self._live if d.account_id == account_id]:
            self._receivers.pop(device, None)
            self._live.pop(device).revoke()

    def revoke_device(self, device: DeviceRef) -> None:
        """Close the device's connection (the device was removed)."""
        self._receivers.pop(device, None)
        connection = self._live.pop(device, None)
        if connection is not None:
            connection.revoke()

    def is_connected(self, device: DeviceRef) -> bool:
        """Whether the device has a live connection on this node (push goes to the others)."""
        return device in self._live

    def __len__(self) -> int:
        return len(self._live)
