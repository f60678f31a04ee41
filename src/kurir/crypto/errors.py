"""The error tree of the Signal protocol layer.

Owns: every exception `kurir.crypto` raises. Nothing in the crypto package raises anything else
on bad input (no assertion is a runtime check). The tree separates what the peer sent wrong
(`RemoteProtocolError`: a message or key from outside that fails to parse, verify or decrypt)
from what the caller did wrong (`LocalProtocolError`: misuse of the API or of the local state).

Exception text is for logs and developers; it never carries key material or plaintext, and it is
never sent to a peer.
"""

from __future__ import annotations


class SignalProtocolError(Exception):
    """Base of every error raised by `kurir.crypto`."""


class LocalProtocolError(SignalProtocolError):
    """The caller misused the API or the local state is not fit for the operation."""


class RemoteProtocolError(SignalProtocolError):
    """What came from outside (a peer or the server) is malformed, forged or unusable."""


# --- raised on input from outside -------------------------------------------------------------


class InvalidKeyError(RemoteProtocolError):
    """A serialized key has the wrong type byte, the wrong length, or is not a valid point."""


class BadKeyTypeError(InvalidKeyError):
    """A serialized key carries a type byte this implementation does not know.

    Attributes:
        key_type: the type byte found.
    """

    def __init__(self, key_type: int) -> None:
        super().__init__(f"unknown key type 0x{key_type:02x}")
        self.key_type = key_type


class InvalidSignatureError(RemoteProtocolError):
    """A signature (on a prekey, a certificate, a sender-key message) does not verify."""


class InvalidMessageError(RemoteProtocolError):
    """A message fails to parse, has a bad MAC, or cannot be decrypted."""


class InvalidPreKeyBundleError(InvalidMessageError):
    """A prekey bundle is incomplete (e.g. has no KEM prekey) or its signatures do not verify."""


class InvalidPreKeyMessageError(InvalidMessageError):
    """A PreKeySignalMessage names prekeys this device does not hold or fails PQXDH."""


class LegacyMessageError(InvalidMessageError):
    """A message of an older protocol version than this implementation accepts.

    Attributes:
        version: the version found in the message.
    """

    def __init__(self, version: int) -> None:
        super().__init__(f"message version {version} is no longer supported")
        self.version = version


class UnrecognizedVersionError(InvalidMessageError):
    """A message of a newer protocol version than this implementation knows.

    Attributes:
        version: the version found in the message.
    """

    def __init__(self, version: int) -> None:
        super().__init__(f"message version {version} is not known")
        self.version = version


class DuplicateMessageError(RemoteProtocolError):
    """A message whose key has already been used: a replay or a redelivery.

    The session is unchanged; the caller should drop the message silently.
    """


class UntrustedIdentityError(RemoteProtocolError):
    """The peer's identity key differs from the one trusted for that address.

    Attributes:
        address: the peer whose identity changed (``name.device``).
    """

    def __init__(self, address: str) -> None:
        super().__init__(f"untrusted identity for {address}")
        self.address = address


class InvalidSealedSenderError(RemoteProtocolError):
    """A sealed-sender message fails to decrypt, or its certificates do not verify."""


class NoSenderKeyStateError(RemoteProtocolError):
    """A group message names a sender-key chain this device has not been given.

    The caller should ask the sender to distribute its sender key again.
    """


# --- raised on misuse or local state ----------------------------------------------------------


class NoSessionError(LocalProtocolError):
    """There is no usable session with the addressed device; fetch a bundle and start one.

    Attributes:
        address: the device without a session (``name.device``).
    """

    def __init__(self, address: str) -> None:
        super().__init__(f"no session for {address}")
        self.address = address


class InvalidStateError(LocalProtocolError):
    """A stored record cannot be used (corrupt, of an unknown version, or inconsistent)."""


class InvalidArgumentError(LocalProtocolError):
    """An argument is out of its allowed range (e.g. a device id of 0, an empty plaintext)."""
