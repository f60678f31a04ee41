"""Safety numbers: libsignal's identity-key fingerprints, numeric and scannable.

Owns: `Fingerprint`, its 60-digit display string and its scannable protobuf form
(``CombinedFingerprints``) with the comparison of a scanned code. Knows nothing of sessions or
stores: the caller passes both identity keys and both stable identifiers.

Construction (libsignal ``rust/protocol/src/fingerprint.rs``, "version 2"; the same as Signal's
Java and Swift implementations):

* per party, ``h = SHA-512(0x0000 || identity_key || stable_id || identity_key)`` and then
  ``iterations - 1`` times ``h = SHA-512(h || identity_key)``, with the 33-byte serialized key;
* the display is, per party, the first 30 hash bytes read as six big-endian 5-byte integers,
  each reduced mod 100000 and printed as 5 digits (30 digits); the two 30-digit halves are
  concatenated with the smaller string first, so both parties see the same 60 digits;
* the scannable form is ``CombinedFingerprints{version, local{first 32 bytes}, remote{...}}``;
  a scanned code matches when its local half equals our remote half and vice versa.

kurir passes the accounts' stable ids (the 16 raw bytes of the account UUID) as identifiers,
as Signal's apps do, never an app identifier such as a phone number or handle: a safety number
must not change when a user changes number or handle, and must not reveal it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Final, Self

from kurir.crypto import protos
from kurir.crypto.curve import PublicKey
from kurir.crypto.errors import InvalidArgumentError, RemoteProtocolError

FINGERPRINT_VERSION: Final = 2
"""The scannable format version kurir produces (Signal's current version)."""

FINGERPRINT_ITERATIONS: Final = 5200
"""SHA-512 iterations Signal's apps use for safety numbers."""

_MAX_ITERATIONS: Final = 1_000_000
_HASH_VERSION: Final = b"\x00\x00"
_SCANNABLE_LENGTH: Final = 32
_DISPLAY_BYTES: Final = 30


class FingerprintParsingError(RemoteProtocolError):
    """A scanned fingerprint code is not a valid ``CombinedFingerprints`` message."""


class FingerprintVersionMismatchError(RemoteProtocolError):
    """A scanned fingerprint code has another version than ours.

    The peer's app is older or newer; the numbers cannot be compared this way.

    Attributes:
        theirs: the version in the scanned code (0 when absent).
        ours: our version.
    """

    def __init__(self, theirs: int, ours: int) -> None:
        super().__init__(f"fingerprint version mismatch: theirs {theirs}, ours {ours}")
        self.theirs = theirs
        self.ours = ours


@dataclass(frozen=True, slots=True)
class _Combined:
    # fingerprint.proto's CombinedFingerprints, with absent fields as None
    version: int | None
    local: bytes | None
    remote: bytes | None


def _decode_combined(data: bytes) -> _Combined:
    try:
        proto = protos.parse(protos.CombinedFingerprints, data)
    except ValueError as exc:
        raise FingerprintParsingError("malformed scannable fingerprint") from exc

    def content(name: str) -> bytes | None:
        if not proto.HasField(name):
            return None
        logical = getattr(proto, name)
        return bytes(logical.content) if logical.HasField("content") else None

    version = int(proto.version) if proto.HasField("version") else None
    return _Combined(version, content("local_fingerprint"), content("remote_fingerprint"))


def _iterated_hash(iterations: int, stable_id: bytes, key: PublicKey) -> bytes:
    key_bytes = key.serialize()
    digest = hashlib.sha512(_HASH_VERSION + key_bytes + stable_id + key_bytes).digest()
    for _ in range(1, iterations):
        digest = hashlib.sha512(digest + key_bytes).digest()
    return digest


def _display_half(digest: bytes) -> str:
    chunks = (digest[i : i + 5] for i in range(0, _DISPLAY_BYTES, 5))
    return "".join(f"{int.from_bytes(chunk, 'big') % 100_000:05d}" for chunk in chunks)


def stable_id_bytes(account_id: uuid.UUID) -> bytes:
    """Returns the identifier kurir hashes into safety numbers: the account UUID's 16 bytes."""
    return account_id.bytes


@dataclass(frozen=True, slots=True)
class ScannableFingerprint:
    """The half of a safety number shown as a QR code.

    Attributes:
        version: the format version (2).
        local_fingerprint: the first 32 bytes of our iterated hash.
        remote_fingerprint: the first 32 bytes of the peer's iterated hash.
    """

    version: int
    local_fingerprint: bytes
    remote_fingerprint: bytes

    @classmethod
    def deserialize(cls, data: bytes) -> Self:
        """Parses a ``CombinedFingerprints`` message.

        Raises:
            FingerprintParsingError: malformed, or a field is missing.
        """
        combined = _decode_combined(data)
        if combined.version is None:
            raise FingerprintParsingError("missing version")
        if combined.local is None:
            raise FingerprintParsingError("missing local fingerprint")
        if combined.remote is None:
            raise FingerprintParsingError("missing remote fingerprint")
        return cls(combined.version, combined.local, combined.remote)

    def serialize(self) -> bytes:
        """Returns the ``CombinedFingerprints`` bytes to put in the QR code."""
        proto = protos.CombinedFingerprints(version=self.version)
        proto.local_fingerprint.content = self.local_fingerprint
        proto.remote_fingerprint.content = self.remote_fingerprint
        return bytes(proto.SerializeToString())

    def compare(self, scanned: bytes) -> bool:
        """Checks a code scanned from the peer's screen against ours.

        Args:
            scanned: the bytes read from the peer's QR code.

        Returns:
            True when the peer sees the same two identity keys (their local half is our remote
            half and theirs remote is our local); False otherwise. Constant-time in the hashes.

        Raises:
            FingerprintVersionMismatchError: the code has another version.
            FingerprintParsingError: the code is malformed or misses a half.
        """
        combined = _decode_combined(scanned)
        theirs = combined.version if combined.version is not None else 0
        if theirs != self.version:
            raise FingerprintVersionMismatchError(theirs, self.version)
        if combined.local is None:
            raise FingerprintParsingError("missing their local fingerprint")
        if combined.remote is None:
            raise FingerprintParsingError("missing their remote fingerprint")
        same_local = hmac.compare_digest(combined.local, self.remote_fingerprint)
        same_remote = hmac.compare_digest(combined.remote, self.local_fingerprint)
        return same_local and same_remote


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A safety number between us and one peer.

    Attributes:
        display: the 60-digit string both parties see alike.
        scannable: the QR-code form.
    """

    display: str
    scannable: ScannableFingerprint

    @classmethod
    def create(
        cls,
        *,
        local_id: bytes,
        local_key: PublicKey,
        remote_id: bytes,
        remote_key: PublicKey,
        iterations: int = FINGERPRINT_ITERATIONS,
        version: int = FINGERPRINT_VERSION,
    ) -> Self:
        """Computes the safety number of two identities.

        Args:
            local_id: our stable identifier (kurir: `stable_id_bytes` of our account UUID).
            local_key: our identity public key.
            remote_id: the peer's stable identifier.
            remote_key: the peer's identity public key.
            iterations: SHA-512 iterations, 2..1000000 (Signal uses 5200).
            version: the scannable format version.

        Raises:
            InvalidArgumentError: iterations out of range.
        """
        if not 1 < iterations <= _MAX_ITERATIONS:
            raise InvalidArgumentError(f"fingerprint iterations must be 2..{_MAX_ITERATIONS}")
        local = _iterated_hash(iterations, local_id, local_key)
        remote = _iterated_hash(iterations, remote_id, remote_key)
        local_digits = _display_half(local)
        remote_digits = _display_half(remote)
        display = "".join(sorted((local_digits, remote_digits)))
        scannable = ScannableFingerprint(
            version, local[:_SCANNABLE_LENGTH], remote[:_SCANNABLE_LENGTH]
        )
        return cls(display, scannable)

    @classmethod
    def for_accounts(
        cls,
        *,
        local_account: uuid.UUID,
        local_key: PublicKey,
        remote_account: uuid.UUID,
        remote_key: PublicKey,
    ) -> Self:
        """Computes the safety number kurir shows: Signal's parameters, account UUIDs as ids."""
        return cls.create(
            local_id=stable_id_bytes(local_account),
            local_key=local_key,
            remote_id=stable_id_bytes(remote_account),
            remote_key=remote_key,
        )
