"""The error tree of the client SDK.

Owns: every exception `kurir.client` raises to an application. Errors split, as everywhere in
kurir, into what the caller did wrong (`UsageError`), what a peer sent that cannot be used
(`PeerContentError`) and what the server or the network did (`ServerError`, `TransportError`).
Every class carries a message that is safe to show a user: no keys, no plaintext.

Tree::

    ClientError
      UsageError                 the application misused the SDK
        NotRegisteredError       the profile has no account yet (call `register` first)
        AlreadyRegisteredError   the profile already holds an account
        InvalidAddressError      an address does not parse (app:identifier)
      UnknownAddressError        nobody is registered under that address
      IdentityChangedError       a peer's identity key changed; accept it before sending
      PeerContentError           what a peer published or sent cannot be used
      ServerError                the server refused a request (carries its error code)
      TransportError             the server cannot be reached or the connection broke
      StoreError                 the local store is unusable (corrupt, newer schema)
"""

from __future__ import annotations

__all__ = [
    "AlreadyRegisteredError",
    "ClientError",
    "IdentityChangedError",
    "InvalidAddressError",
    "NotRegisteredError",
    "PeerContentError",
    "ServerError",
    "StoreError",
    "TransportError",
    "UnknownAddressError",
    "UsageError",
]


class ClientError(Exception):
    """Base of every error `kurir.client` raises. ``str(error)`` is fit to show a user."""


class UsageError(ClientError):
    """The application called the SDK in a way that cannot work."""


class NotRegisteredError(UsageError):
    """The profile holds no account yet: call `Client.register` first."""

    def __init__(self) -> None:
        super().__init__("this profile is not registered yet (run register first)")


class AlreadyRegisteredError(UsageError):
    """The profile already holds an account; use a new profile directory for another one."""

    def __init__(self, address: str) -> None:
        super().__init__(f"this profile is already registered as {address}")
        self.address = address


class InvalidAddressError(UsageError):
    """An address is not of the form ``app:identifier`` or its identifier is invalid."""


class UnknownAddressError(ClientError):
    """Nobody is registered under an address (the directory does not know it)."""

    def __init__(self, address: str) -> None:
        super().__init__(f"no one is registered as {address}")
        self.address = address


class IdentityChangedError(ClientError):
    """A peer's identity key (and so the safety number) changed since it was first seen.

    Nothing is sent until the application accepts the new key (`Client.accept_identity`),
    ideally after the user compared the new safety number.
    """

    def __init__(self, address: str) -> None:
        super().__init__(
            f"the safety number with {address} changed; compare it and accept the new key"
            " before sending"
        )
        self.address = address


class PeerContentError(ClientError):
    """What a peer published (keys) or sent (content) is malformed, forged or too new."""


class ServerError(ClientError):
    """The server refused a request.

    Attributes:
        code: the machine-readable error code from the server (docs/protocol.md §Errors).
        status: the HTTP status, or None for a WebSocket `result` error.
    """

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"server refused the request: {message} ({code})")
        self.code = code
        self.status = status


class TransportError(ClientError):
    """The server cannot be reached, or the connection broke mid-request."""


class StoreError(ClientError):
    """The local store cannot be used (corrupt, or written by a newer client)."""
