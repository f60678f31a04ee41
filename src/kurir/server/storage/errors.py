"""Errors the stores raise. The peer's fault and ours are different classes.

Tree::

    StorageError
      RequestRefused            the caller asked for something the state forbids (peer's fault)
        IdentityKeyChanged      a different identity key for an account that has one
        KeysNotSet              a first key upload lacks a signed or last-resort prekey
        UnknownDevice           the device does not exist (any more)
        MailboxFull             a recipient mailbox is at its cap
        TooManyDevices          an account is at its device limit
      SchemaTooNew              the database is newer than this kurir (refuse to start)
"""

from __future__ import annotations

from kurir.server.types import DeviceRef

__all__ = [
    "DatabaseInUse",
    "IdentityKeyChanged",
    "KeysNotSet",
    "MailboxFull",
    "RequestRefused",
    "SchemaTooNew",
    "StorageError",
    "TooManyDevices",
    "UnknownDevice",
]


class StorageError(Exception):
    """Base of storage errors."""


class RequestRefused(StorageError):
    """The request conflicts with stored state; nothing was changed."""


class IdentityKeyChanged(RequestRefused):
    """The account already has a different identity key (only re-registration changes it)."""


class KeysNotSet(RequestRefused):
    """The device's first key upload must carry a signed prekey and a last-resort PQ prekey,
    and the account needs an identity key."""


class UnknownDevice(RequestRefused):
    """The device does not exist."""


class MailboxFull(RequestRefused):
    """At least one recipient mailbox is at its cap; nothing was enqueued.

    Attributes:
        devices: The full mailboxes.
    """

    def __init__(self, devices: list[DeviceRef]) -> None:
        if not devices:
            raise ValueError("MailboxFull needs at least one device")
        super().__init__(f"{len(devices)} mailbox(es) full")
        self.devices = devices

    def __reduce__(self) -> tuple[type[MailboxFull], tuple[list[DeviceRef]]]:
        """Pickle by the devices (it crosses from the SQLite writer process)."""
        return (MailboxFull, (self.devices,))


class TooManyDevices(RequestRefused):
    """The account already has the maximum number of devices."""


class DatabaseInUse(StorageError):
    """Another process has the SQLite database open: the embedded engine has one owner."""


class SchemaTooNew(StorageError):
    """The database schema is newer than this kurir knows; refusing to touch it."""
