"""Synchronous Python driver for the libsignal interop harness (``harness/harness.mjs``).

Owns: starting one Node.js process that runs ``@signalapp/libsignal-client`` (the version pinned
in ``harness/package.json``), speaking its JSON-lines protocol over pipes, and typed wrappers
(bytes in, bytes out; base64 is handled here) for every operation of the harness.

Knows nothing of kurir: tests feed kurir's bundles and ciphertexts in and take libsignal's out.
It is synchronous on purpose, so the sans-I/O crypto tests can use it without asyncio.

Usage::

    with Libsignal() as ls:
        alice = ls.create_participant("alice")
        ...

``call(op, **args)`` is the raw interface (arguments and results as the harness sees them:
base64 strings for bytes); the typed methods below cover every op. A failed op raises
:class:`LibsignalError` carrying libsignal's ``ErrorCode`` name (0.90.0 reports many protocol
failures, such as a bad MAC, as ``"Generic"``: compare ``message`` for detail) or the harness's
own code (``BadRequest``, ``UnknownOp``, ``UnknownParticipant``, ``NotSupported``...). A dead or
hung process raises :class:`HarnessFailure`.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
"""The folder holding ``harness.mjs``, ``package.json`` and (after ``npm ci``) node_modules."""

LIBRARY_VERSION = "0.90.0"
"""The ``@signalapp/libsignal-client`` version the harness is pinned to."""

DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for one answer before declaring the harness hung (a safety net, not a test)."""


class LibsignalError(Exception):
    """An operation failed inside the harness (``ok: false``).

    Attributes:
        code: libsignal's ``ErrorCode`` name (``"Generic"``, ``"DuplicatedMessage"``,
            ``"UntrustedIdentity"``, ``"InvalidSession"``, ``"InvalidSenderKeySession"``,
            ``"SealedSenderSelfSend"``...) or a harness code (``"BadRequest"``, ``"UnknownOp"``,
            ``"UnknownParticipant"``, ``"NotSupported"``, ``"BadProtobuf"``, ``"NoPreKey"``...).
        message: libsignal's (or the harness's) explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HarnessFailure(RuntimeError):
    """The harness process died, hung, or answered out of protocol."""


class CiphertextType(IntEnum):
    """libsignal's ``CiphertextMessageType``."""

    WHISPER = 2
    PREKEY = 3
    SENDER_KEY = 7
    PLAINTEXT = 8


def unavailable_reason() -> str | None:
    """Says why the harness cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node (Node.js) is not on PATH"
    package = HARNESS_DIR / "node_modules" / "@signalapp" / "libsignal-client" / "package.json"
    if not package.is_file():
        return f"libsignal is not installed: run `npm ci` in {HARNESS_DIR}"
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise HarnessFailure(f"expected a base64 string, got {value!r}")
    return base64.b64decode(value, validate=True)


def _opt_unb64(value: Any) -> bytes | None:
    return None if value is None else _unb64(value)


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant held by the harness; ``address`` is its ProtocolAddress name."""

    name: str
    address: str
    device_id: int
    registration_id: int
    identity_public: bytes
    identity_private: bytes


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """The public pieces of a PQXDH bundle, as ``PreKeyBundle.new`` takes them."""

    registration_id: int
    device_id: int
    identity_key: bytes
    signed_prekey_id: int
    signed_prekey_public: bytes
    signed_prekey_signature: bytes
    kyber_prekey_id: int
    kyber_prekey_public: bytes
    kyber_prekey_signature: bytes
    prekey_id: int | None = None
    prekey_public: bytes | None = None


@dataclass(frozen=True, slots=True)
class GeneratedPreKeys:
    """What ``generate_prekeys`` made: the bundle and the private halves it stored."""

    bundle: PreKeyBundle
    prekey_private: bytes | None
    signed_prekey_private: bytes
    kyber_prekey_secret: bytes


@dataclass(frozen=True, slots=True)
class AddedKey:
    """A prekey added from external key material: its id, public key and signature."""

    key_id: int
    public: bytes
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """A ``CiphertextMessage``: its type and serialized body."""

    type: CiphertextType
    body: bytes


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A participant's session with one address.

    ``session`` is the decoded current ``SessionStructure`` (keys base64, as the harness reports
    it; see docs/interop.md) for debugging; ``version`` is its ``session_version``.
    """

    has_session: bool
    has_current_state: bool
    version: int | None
    previous_sessions: int
    session: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SignalMessageInfo:
    """The fields of a serialized ``SignalMessage`` (version byte, protobuf, 8-byte MAC)."""

    message_version: int
    version_byte: int
    counter: int
    previous_counter: int | None
    ratchet_key: bytes
    ciphertext: bytes
    pq_ratchet: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class PreKeyMessageInfo:
    """The fields of a serialized ``PreKeySignalMessage``."""

    message_version: int
    version_byte: int
    registration_id: int
    pre_key_id: int | None
    signed_pre_key_id: int
    kyber_pre_key_id: int | None
    kyber_ciphertext: bytes | None
    base_key: bytes
    identity_key: bytes
    message: bytes
    signal_message: SignalMessageInfo


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A safety number: the 60-digit display string and the scannable protobuf encoding."""

    display: str
    scannable: bytes


@dataclass(frozen=True, slots=True)
class SenderCertificateInfo:
    """The fields of a ``SenderCertificate`` (and its server certificate)."""

    sender_uuid: str
    sender_e164: str | None
    sender_device_id: int
    sender_key: bytes
    expiration: int
    server_key_id: int
    server_key: bytes
    server_certificate: bytes
    valid: bool | None


@dataclass(frozen=True, slots=True)
class Usmc:
    """An ``UnidentifiedSenderMessageContent``: the inner message and who sent it."""

    msg_type: int
    contents: bytes
    content_hint: int
    group_id: bytes | None
    sender_certificate: bytes
    sender: SenderCertificateInfo
    serialized: bytes


@dataclass(frozen=True, slots=True)
class SealedSenderResult:
    """What ``sealedSenderDecryptMessage`` returns."""

    plaintext: bytes
    sender_uuid: str
    sender_e164: str | None
    sender_device_id: int


@dataclass(frozen=True, slots=True)
class SenderKeyDistributionInfo:
    """The fields of a ``SenderKeyDistributionMessage``."""

    version_byte: int
    distribution_id: str
    chain_id: int
    iteration: int
    chain_key: bytes
    signing_key: bytes


@dataclass(frozen=True, slots=True)
class SenderKeyMessageInfo:
    """The fields of a ``SenderKeyMessage``; ``signature_valid`` when a key was given."""

    version_byte: int
    distribution_id: str
    chain_id: int
    iteration: int
    ciphertext: bytes
    signature: bytes
    signature_valid: bool | None


@dataclass(frozen=True, slots=True)
class DecryptionError:
    """A ``DecryptionErrorMessage`` (retry request): the failed message's timestamp, the
    original sender's device, and the ratchet key of the failed message (Whisper/PreKey only)."""

    message: bytes | None
    plaintext_content: bytes | None
    timestamp: int
    device_id: int
    ratchet_key: bytes | None


def _signal_message_info(r: dict[str, Any]) -> SignalMessageInfo:
    return SignalMessageInfo(
        message_version=int(r["message_version"]),
        version_byte=int(r["version_byte"]),
        counter=int(r["counter"]),
        previous_counter=r["previous_counter"],
        ratchet_key=_unb64(r["ratchet_key"]),
        ciphertext=_unb64(r["ciphertext"]),
        pq_ratchet=_unb64(r["pq_ratchet"]),
        mac=_unb64(r["mac"]),
    )


def _certificate_info(r: dict[str, Any]) -> SenderCertificateInfo:
    return SenderCertificateInfo(
        sender_uuid=str(r["sender_uuid"]),
        sender_e164=r["sender_e164"],
        sender_device_id=int(r["sender_device_id"]),
        sender_key=_unb64(r["sender_key"]),
        expiration=int(r["expiration"]),
        server_key_id=int(r["server_key_id"]),
        server_key=_unb64(r["server_key"]),
        server_certificate=_unb64(r["server_certificate"]),
        valid=r.get("valid"),
    )


def _usmc(r: dict[str, Any]) -> Usmc:
    return Usmc(
        msg_type=int(r["msg_type"]),
        contents=_unb64(r["contents"]),
        content_hint=int(r["content_hint"]),
        group_id=_opt_unb64(r["group_id"]),
        sender_certificate=_unb64(r["sender_certificate"]),
        sender=_certificate_info(r["sender"]),
        serialized=_unb64(r["serialized"]),
    )


class Libsignal:
    """One harness process and typed access to its operations.

    Args:
        node: the Node.js executable (default: ``node`` on PATH).
        timeout: seconds to wait for one answer before raising :class:`HarnessFailure`.

    Raises:
        HarnessFailure: node or the installed library is missing (see :func:`unavailable_reason`).
    """

    def __init__(self, *, node: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        executable = node or shutil.which("node")
        reason = unavailable_reason()
        if executable is None or reason is not None:
            raise HarnessFailure(reason or "node not found")
        self._timeout = timeout
        self._closed = False
        self._next_id = 0
        self._buffer = bytearray()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._proc = subprocess.Popen(
            [executable, "harness.mjs"],
            cwd=HARNESS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        self._selector = selectors.DefaultSelector()
        assert self._proc.stdout is not None
        self._selector.register(self._proc.stdout, selectors.EVENT_READ)
        self.version = str(self.call("ping")["version"])

    # --- process -------------------------------------------------------------------------------

    def close(self) -> None:
        """Ends the harness process (closing its stdin) and waits for it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=self._timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._selector.close()
        self._stderr.close()

    @property
    def alive(self) -> bool:
        """Whether the process runs and has not been closed."""
        return not self._closed and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-4000:].decode("utf-8", "replace")

    def _read_line(self) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            if not self._selector.select(self._timeout):
                raise HarnessFailure(f"no answer from the harness in {self._timeout} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self._proc.wait()
                raise HarnessFailure(f"harness exited ({code}): {self._stderr_tail()}")
            self._buffer += chunk

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Runs one harness operation with raw (JSON) arguments; returns the raw result.

        Raises:
            LibsignalError: the operation failed (``ok: false``).
            HarnessFailure: the process died, hung or broke the protocol.
        """
        if self._closed:
            raise HarnessFailure("the harness was closed")
        if "id" in args or "op" in args:
            raise ValueError("'id' and 'op' are reserved request fields")
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps({**args, "id": request_id, "op": op}, separators=(",", ":"))
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode("utf-8") + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError as err:
            raise HarnessFailure(f"harness is gone: {self._stderr_tail()}") from err
        answer = json.loads(self._read_line())
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise HarnessFailure(f"answer out of order for request {request_id}: {answer!r}")
        if answer.get("ok") is not True:
            raise LibsignalError(str(answer.get("error")), str(answer.get("message")))
        return answer

    # --- participants --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forgets every participant (and so every store)."""
        self.call("reset")

    def create_participant(
        self,
        name: str,
        *,
        address: str | None = None,
        device_id: int = 1,
        registration_id: int | None = None,
        identity_private: bytes | None = None,
        native_records: bool = False,
    ) -> Participant:
        """Creates a participant with fresh (or the given) identity key and empty stores.

        ``address`` (default: ``name``) is the ProtocolAddress name others use for it; use a
        UUID string when the participant takes part in sealed sender. ``native_records`` gives
        it a session store that keeps libsignal's record objects instead of serialized bytes
        (for benchmarks: no record encoding on libsignal's side).
        """
        r = self.call(
            "create_participant",
            name=name,
            address=address,
            device_id=device_id,
            registration_id=registration_id,
            identity_private=None if identity_private is None else _b64(identity_private),
            native_records=native_records,
        )
        return Participant(
            name=str(r["name"]),
            address=str(r["address"]),
            device_id=int(r["device_id"]),
            registration_id=int(r["registration_id"]),
            identity_public=_unb64(r["identity_public"]),
            identity_private=_unb64(r["identity_private"]),
        )

    def set_trust_all(self, name: str, trust_all: bool) -> None:
        """Makes ``isTrustedIdentity`` always true (default: trust on first use)."""
        self.call("set_trust_all", name=name, trust_all=trust_all)

    def saved_identity(self, name: str, peer: str, *, device: int = 1) -> bytes | None:
        """The identity key ``name`` has saved for ``peer``, if any."""
        return _opt_unb64(
            self.call("saved_identity", name=name, peer=peer, device=device)["identity"]
        )

    # --- prekeys -------------------------------------------------------------------------------

    def generate_prekeys(
        self,
        name: str,
        *,
        prekey_id: int | None = None,
        signed_prekey_id: int | None = None,
        kyber_prekey_id: int | None = None,
        one_time: bool = True,
        timestamp: int | None = None,
    ) -> GeneratedPreKeys:
        """Generates and stores a one-time EC prekey (unless ``one_time`` is false), a signed
        prekey and a Kyber1024 (type 0x08) prekey; ids default to the next free number."""
        r = self.call(
            "generate_prekeys",
            name=name,
            prekey_id=prekey_id,
            signed_prekey_id=signed_prekey_id,
            kyber_prekey_id=kyber_prekey_id,
            one_time=one_time,
            timestamp=timestamp,
        )
        bundle = PreKeyBundle(
            registration_id=int(r["registration_id"]),
            device_id=int(r["device_id"]),
            identity_key=_unb64(r["identity_key"]),
            prekey_id=r["prekey_id"],
            prekey_public=_opt_unb64(r["prekey_public"]),
            signed_prekey_id=int(r["signed_prekey_id"]),
            signed_prekey_public=_unb64(r["signed_prekey_public"]),
            signed_prekey_signature=_unb64(r["signed_prekey_signature"]),
            kyber_prekey_id=int(r["kyber_prekey_id"]),
            kyber_prekey_public=_unb64(r["kyber_prekey_public"]),
            kyber_prekey_signature=_unb64(r["kyber_prekey_signature"]),
        )
        return GeneratedPreKeys(
            bundle=bundle,
            prekey_private=_opt_unb64(r["prekey_private"]),
            signed_prekey_private=_unb64(r["signed_prekey_private"]),
            kyber_prekey_secret=_unb64(r["kyber_prekey_secret"]),
        )

    def add_prekey(self, name: str, key_id: int, private: bytes) -> AddedKey:
        """Stores a one-time EC prekey made from the given 32-byte private key."""
        r = self.call("add_prekey", name=name, key_id=key_id, private=_b64(private))
        return AddedKey(key_id=int(r["key_id"]), public=_unb64(r["public"]), signature=None)

    def add_signed_prekey(
        self,
        name: str,
        key_id: int,
        private: bytes,
        *,
        signature: bytes | None = None,
        timestamp: int | None = None,
    ) -> AddedKey:
        """Stores a signed prekey from the given private key (signed by the identity key
        unless ``signature`` is given)."""
        r = self.call(
            "add_signed_prekey",
            name=name,
            key_id=key_id,
            private=_b64(private),
            signature=None if signature is None else _b64(signature),
            timestamp=timestamp,
        )
        return AddedKey(
            key_id=int(r["key_id"]), public=_unb64(r["public"]), signature=_unb64(r["signature"])
        )

    def add_kyber_prekey(
        self,
        name: str,
        key_id: int,
        public: bytes,
        secret: bytes,
        *,
        signature: bytes | None = None,
        timestamp: int | None = None,
    ) -> AddedKey:
        """Stores a KEM prekey from external serialized keys (type byte first).

        Raises:
            LibsignalError: ``Generic`` ("bad KEM key type <0x0a>") for a type 0.90.0 lacks.
        """
        r = self.call(
            "add_kyber_prekey",
            name=name,
            key_id=key_id,
            public=_b64(public),
            secret=_b64(secret),
            signature=None if signature is None else _b64(signature),
            timestamp=timestamp,
        )
        return AddedKey(
            key_id=int(r["key_id"]), public=_unb64(r["public"]), signature=_unb64(r["signature"])
        )

    def kyber_prekeys_used(self, name: str) -> list[dict[str, Any]]:
        """The ``markKyberPreKeyUsed`` calls seen: ``{id, signedPreKeyId, baseKey}`` each."""
        used = self.call("kyber_prekeys_used", name=name)["used"]
        assert isinstance(used, list)
        return used

    def has_prekey(self, name: str, key_id: int) -> bool:
        """Whether the one-time prekey ``key_id`` is still stored (libsignal removes it on use)."""
        return bool(self.call("has_prekey", name=name, key_id=key_id)["present"])

    # --- 1:1 sessions --------------------------------------------------------------------------

    def process_bundle(
        self, name: str, peer: str, bundle: PreKeyBundle, *, device: int | None = None
    ) -> None:
        """``processPreKeyBundle``: ``name`` starts a session with ``peer`` (PQXDH, Alice)."""
        self.call(
            "process_bundle",
            name=name,
            peer=peer,
            device=bundle.device_id if device is None else device,
            registration_id=bundle.registration_id,
            identity_key=_b64(bundle.identity_key),
            prekey_id=bundle.prekey_id,
            prekey_public=None if bundle.prekey_public is None else _b64(bundle.prekey_public),
            signed_prekey_id=bundle.signed_prekey_id,
            signed_prekey_public=_b64(bundle.signed_prekey_public),
            signed_prekey_signature=_b64(bundle.signed_prekey_signature),
            kyber_prekey_id=bundle.kyber_prekey_id,
            kyber_prekey_public=_b64(bundle.kyber_prekey_public),
            kyber_prekey_signature=_b64(bundle.kyber_prekey_signature),
        )

    def encrypt(self, name: str, peer: str, plaintext: bytes, *, device: int = 1) -> Ciphertext:
        """``signalEncrypt``: a PreKey message until the peer answers, then Whisper messages."""
        r = self.call("encrypt", name=name, peer=peer, device=device, plaintext=_b64(plaintext))
        return Ciphertext(type=CiphertextType(int(r["type"])), body=_unb64(r["body"]))

    def decrypt(self, name: str, peer: str, message: Ciphertext, *, device: int = 1) -> bytes:
        """``signalDecryptPreKey`` or ``signalDecrypt`` by ``message.type``."""
        r = self.call(
            "decrypt",
            name=name,
            peer=peer,
            device=device,
            type=int(message.type),
            body=_b64(message.body),
        )
        return _unb64(r["plaintext"])

    def session_info(self, name: str, peer: str, *, device: int = 1) -> SessionInfo:
        """Whether ``name`` has a session with ``peer`` and its decoded current state."""
        r = self.call("session_info", name=name, peer=peer, device=device)
        return SessionInfo(
            has_session=bool(r["has_session"]),
            has_current_state=bool(r["has_current_state"]),
            version=r["version"],
            previous_sessions=int(r.get("previous_sessions", 0)),
            session=r["session"],
        )

    def session_record(self, name: str, peer: str, *, device: int = 1) -> bytes | None:
        """The serialized ``SessionRecord`` (libsignal's storage protobuf), if any."""
        return _opt_unb64(
            self.call("session_record", name=name, peer=peer, device=device)["record"]
        )

    def set_session_record(self, name: str, peer: str, record: bytes, *, device: int = 1) -> bool:
        """Loads a serialized ``SessionRecord`` (e.g. kurir's) into ``name``'s store for ``peer``.

        Returns:
            Whether the record has a current state (libsignal's ``hasCurrentState``).
        """
        r = self.call(
            "set_session_record", name=name, peer=peer, device=device, record=_b64(record)
        )
        return bool(r["has_current_state"])

    def archive_session(self, name: str, peer: str, *, device: int = 1) -> None:
        """``SessionRecord.archiveCurrentState`` on ``name``'s session with ``peer``."""
        self.call("archive_session", name=name, peer=peer, device=device)

    def delete_session(self, name: str, peer: str, *, device: int = 1) -> None:
        """Drops ``name``'s session record for ``peer``."""
        self.call("delete_session", name=name, peer=peer, device=device)

    # --- primitives ----------------------------------------------------------------------------

    def private_generate(self) -> tuple[bytes, bytes]:
        """``PrivateKey.generate``: (32-byte private, 33-byte serialized public)."""
        r = self.call("private_generate")
        return _unb64(r["private"]), _unb64(r["public"])

    def public_key(self, private: bytes) -> bytes:
        """``PrivateKey.deserialize(private).getPublicKey().serialize()`` (33 bytes, 0x05 first)."""
        return _unb64(self.call("private_public", private=_b64(private))["public"])

    def public_key_bytes(self, public: bytes) -> bytes:
        """``PublicKey.getPublicKeyBytes``: the 32 raw bytes of a serialized public key."""
        return _unb64(self.call("public_serialize", public=_b64(public))["public_key_bytes"])

    def sign(self, private: bytes, message: bytes) -> bytes:
        """``PrivateKey.sign``: a 64-byte XEdDSA signature (randomized)."""
        return _unb64(self.call("sign", private=_b64(private), message=_b64(message))["signature"])

    def verify(self, public: bytes, message: bytes, signature: bytes) -> bool:
        """``PublicKey.verify`` of an XEdDSA signature."""
        r = self.call(
            "verify", public=_b64(public), message=_b64(message), signature=_b64(signature)
        )
        return bool(r["valid"])

    def agree(self, private: bytes, public: bytes) -> bytes:
        """``PrivateKey.agree``: X25519 with a serialized (33-byte) public key."""
        return _unb64(self.call("agree", private=_b64(private), public=_b64(public))["shared"])

    def hkdf(self, length: int, ikm: bytes, info: bytes = b"", salt: bytes | None = None) -> bytes:
        """libsignal's exported ``hkdf`` (HKDF-SHA256)."""
        r = self.call(
            "hkdf",
            length=length,
            ikm=_b64(ikm),
            info=_b64(info),
            salt=None if salt is None else _b64(salt),
        )
        return _unb64(r["okm"])

    def kem_generate(self) -> tuple[bytes, bytes]:
        """``KEMKeyPair.generate``: (public 1,569 bytes, secret 3,169 bytes), Kyber1024 (0x08)."""
        r = self.call("kem_generate")
        return _unb64(r["public"]), _unb64(r["secret"])

    def kem_check(
        self, *, public: bytes | None = None, secret: bytes | None = None
    ) -> dict[str, Any]:
        """Whether libsignal deserializes these KEM keys: ``{"public": {"ok": ..}, ...}``."""
        return self.call(
            "kem_check",
            public=None if public is None else _b64(public),
            secret=None if secret is None else _b64(secret),
        )

    def fingerprint(
        self,
        local_id: bytes,
        local_key: bytes,
        remote_id: bytes,
        remote_key: bytes,
        *,
        iterations: int = 5200,
        version: int = 2,
    ) -> Fingerprint:
        """``Fingerprint.new``: the safety number of two identities (keys serialized, 33 bytes)."""
        r = self.call(
            "fingerprint",
            iterations=iterations,
            version=version,
            local_id=_b64(local_id),
            local_key=_b64(local_key),
            remote_id=_b64(remote_id),
            remote_key=_b64(remote_key),
        )
        return Fingerprint(display=str(r["display"]), scannable=_unb64(r["scannable"]))

    def fingerprint_compare(self, local: bytes, remote: bytes) -> bool:
        """``ScannableFingerprint.compare``: raises ``LibsignalError`` on a version mismatch."""
        r = self.call("fingerprint_compare", local=_b64(local), remote=_b64(remote))
        return bool(r["match"])

    # --- sender keys ---------------------------------------------------------------------------

    def sender_key_distribution(self, name: str, distribution_id: str) -> bytes:
        """``SenderKeyDistributionMessage.create`` for ``name``'s own address and the UUID."""
        r = self.call("sender_key_distribution", name=name, distribution_id=distribution_id)
        return _unb64(r["message"])

    def process_sender_key_distribution(
        self, name: str, sender: str, message: bytes, *, device: int = 1
    ) -> None:
        """``processSenderKeyDistributionMessage`` from ``sender`` (address name, device)."""
        self.call(
            "process_sender_key_distribution",
            name=name,
            peer=sender,
            device=device,
            message=_b64(message),
        )

    def group_encrypt(self, name: str, distribution_id: str, plaintext: bytes) -> bytes:
        """``groupEncrypt``: a serialized ``SenderKeyMessage`` (type 7)."""
        r = self.call(
            "group_encrypt", name=name, distribution_id=distribution_id, plaintext=_b64(plaintext)
        )
        return _unb64(r["body"])

    def group_decrypt(self, name: str, sender: str, body: bytes, *, device: int = 1) -> bytes:
        """``groupDecrypt`` of a ``SenderKeyMessage`` from ``sender``."""
        r = self.call("group_decrypt", name=name, peer=sender, device=device, body=_b64(body))
        return _unb64(r["plaintext"])

    def parse_sender_key_distribution(self, message: bytes) -> SenderKeyDistributionInfo:
        """The fields of a ``SenderKeyDistributionMessage``."""
        r = self.call("parse_sender_key_distribution", message=_b64(message))
        return SenderKeyDistributionInfo(
            version_byte=int(r["version_byte"]),
            distribution_id=str(r["distribution_id"]),
            chain_id=int(r["chain_id"]),
            iteration=int(r["iteration"]),
            chain_key=_unb64(r["chain_key"]),
            signing_key=_unb64(r["signing_key"]),
        )

    def parse_sender_key_message(
        self, body: bytes, *, signing_key: bytes | None = None
    ) -> SenderKeyMessageInfo:
        """The fields of a ``SenderKeyMessage``; checks its signature if a key is given."""
        r = self.call(
            "parse_sender_key_message",
            body=_b64(body),
            signing_key=None if signing_key is None else _b64(signing_key),
        )
        return SenderKeyMessageInfo(
            version_byte=int(r["version_byte"]),
            distribution_id=str(r["distribution_id"]),
            chain_id=int(r["chain_id"]),
            iteration=int(r["iteration"]),
            ciphertext=_unb64(r["ciphertext"]),
            signature=_unb64(r["signature"]),
            signature_valid=r["signature_valid"],
        )

    # --- sealed sender -------------------------------------------------------------------------

    def server_certificate(
        self, key_id: int, server_public: bytes, trust_root_private: bytes
    ) -> bytes:
        """``ServerCertificate.new``: the trust root signs the server key."""
        r = self.call(
            "server_certificate",
            key_id=key_id,
            server_public=_b64(server_public),
            trust_root_private=_b64(trust_root_private),
        )
        return _unb64(r["certificate"])

    def sender_certificate(
        self,
        *,
        server_certificate: bytes,
        server_private: bytes,
        expiration: int,
        name: str | None = None,
        sender_uuid: str | None = None,
        sender_device_id: int | None = None,
        identity_public: bytes | None = None,
        sender_e164: str | None = None,
    ) -> bytes:
        """``SenderCertificate.new`` for participant ``name`` (its address, device and identity)
        or for an external sender (``sender_uuid``, ``sender_device_id``, ``identity_public``)."""
        r = self.call(
            "sender_certificate",
            name=name,
            sender_uuid=sender_uuid,
            sender_device_id=sender_device_id,
            identity_public=None if identity_public is None else _b64(identity_public),
            sender_e164=sender_e164,
            expiration=expiration,
            server_certificate=_b64(server_certificate),
            server_private=_b64(server_private),
        )
        return _unb64(r["certificate"])

    def parse_sender_certificate(
        self, certificate: bytes, *, trust_root: bytes | None = None, time: int | None = None
    ) -> SenderCertificateInfo:
        """The fields of a ``SenderCertificate``; ``valid`` is set when ``trust_root`` is given
        (``SenderCertificate.validate(trust_root, time)``)."""
        r = self.call(
            "parse_sender_certificate",
            certificate=_b64(certificate),
            trust_root=None if trust_root is None else _b64(trust_root),
            time=time,
        )
        return _certificate_info(r)

    def sealed_encrypt(
        self, name: str, peer: str, plaintext: bytes, sender_certificate: bytes, *, device: int = 1
    ) -> bytes:
        """``sealedSenderEncryptMessage``: a 1:1 message (needs a session), sealed (v1)."""
        r = self.call(
            "sealed_encrypt",
            name=name,
            peer=peer,
            device=device,
            plaintext=_b64(plaintext),
            sender_certificate=_b64(sender_certificate),
        )
        return _unb64(r["body"])

    def usmc_new(
        self,
        msg_type: int,
        contents: bytes,
        sender_certificate: bytes,
        *,
        content_hint: int | None = None,
        group_id: bytes | None = None,
    ) -> bytes:
        """A serialized ``UnidentifiedSenderMessageContent`` from parts (``msg_type`` as
        :class:`CiphertextType`; PREKEY is written as the wire's 1)."""
        r = self.call(
            "usmc_new",
            msg_type=msg_type,
            contents=_b64(contents),
            sender_certificate=_b64(sender_certificate),
            content_hint=content_hint,
            group_id=None if group_id is None else _b64(group_id),
        )
        return _unb64(r["usmc"])

    def sealed_encrypt_usmc(self, name: str, peer: str, usmc: bytes, *, device: int = 1) -> bytes:
        """``sealedSenderEncrypt``: seals a given USMC for ``peer`` (needs ``peer``'s identity
        saved, i.e. a session)."""
        r = self.call("sealed_encrypt_usmc", name=name, peer=peer, device=device, usmc=_b64(usmc))
        return _unb64(r["body"])

    def sealed_decrypt(
        self,
        name: str,
        body: bytes,
        trust_root: bytes,
        *,
        timestamp: int,
        local_uuid: str | None = None,
        local_e164: str | None = None,
        local_device_id: int | None = None,
    ) -> SealedSenderResult:
        """``sealedSenderDecryptMessage``: unseal, validate the certificate at ``timestamp``
        (ms), decrypt the inner 1:1 message. Local uuid/device default to the participant's."""
        r = self.call(
            "sealed_decrypt",
            name=name,
            body=_b64(body),
            trust_root=_b64(trust_root),
            timestamp=timestamp,
            local_uuid=local_uuid,
            local_e164=local_e164,
            local_device_id=local_device_id,
        )
        return SealedSenderResult(
            plaintext=_unb64(r["plaintext"]),
            sender_uuid=str(r["sender_uuid"]),
            sender_e164=r["sender_e164"],
            sender_device_id=int(r["sender_device_id"]),
        )

    def sealed_decrypt_usmc(self, name: str, body: bytes) -> Usmc:
        """``sealedSenderDecryptToUsmc``: unseal only (no validation, inner still encrypted)."""
        return _usmc(self.call("sealed_decrypt_usmc", name=name, body=_b64(body)))

    def sealed_encrypt_multi(
        self,
        name: str,
        recipients: list[tuple[str, int]],
        usmc: bytes,
        *,
        excluded: list[str] | None = None,
    ) -> bytes:
        """``sealedSenderMultiRecipientEncrypt`` (sealed sender v2): one SentMessage for the
        server, for ``(address, device)`` recipients (UUID addresses, sessions needed)."""
        r = self.call(
            "sealed_encrypt_multi",
            name=name,
            recipients=[{"peer": peer, "device": device} for peer, device in recipients],
            usmc=_b64(usmc),
            excluded=excluded or [],
        )
        return _unb64(r["body"])

    def sealed_multi_parse(self, body: bytes) -> tuple[dict[str, dict[str, list[int]]], list[str]]:
        """The server's parse of a v2 SentMessage: ``({service_id: {"device_ids": [..],
        "registration_ids": [..]}}, excluded service ids)``."""
        r = self.call("sealed_multi_parse", body=_b64(body))
        return dict(r["recipients"]), list(r["excluded"])

    def sealed_multi_for_recipient(self, body: bytes, service_id: str) -> bytes:
        """The v2 ReceivedMessage the server delivers to ``service_id`` (all its devices);
        ``sealed_decrypt`` and ``sealed_decrypt_usmc`` open it."""
        r = self.call("sealed_multi_for_recipient", body=_b64(body), service_id=service_id)
        return _unb64(r["body"])

    def parse_usmc(self, usmc: bytes) -> Usmc:
        """The fields of a serialized ``UnidentifiedSenderMessageContent``."""
        return _usmc(self.call("parse_usmc", usmc=_b64(usmc)))

    # --- decryption errors -----------------------------------------------------------------------

    def decryption_error_message(
        self,
        original_body: bytes,
        original_type: int,
        timestamp: int,
        original_sender_device_id: int,
    ) -> DecryptionError:
        """``DecryptionErrorMessage.forOriginal`` and the ``PlaintextContent`` carrying it."""
        r = self.call(
            "decryption_error_message",
            original_body=_b64(original_body),
            original_type=original_type,
            timestamp=timestamp,
            original_sender_device_id=original_sender_device_id,
        )
        return DecryptionError(
            message=_unb64(r["message"]),
            plaintext_content=_unb64(r["plaintext_content"]),
            timestamp=timestamp,
            device_id=original_sender_device_id,
            ratchet_key=_opt_unb64(r["ratchet_key"]),
        )

    def parse_decryption_error_message(
        self, body: bytes, *, plaintext_content: bool = False
    ) -> DecryptionError:
        """Parses a ``DecryptionErrorMessage`` (or, with ``plaintext_content``, the
        ``PlaintextContent`` that carries one)."""
        r = self.call(
            "parse_decryption_error_message", body=_b64(body), plaintext_content=plaintext_content
        )
        return DecryptionError(
            message=None,
            plaintext_content=body if plaintext_content else None,
            timestamp=int(r["timestamp"]),
            device_id=int(r["device_id"]),
            ratchet_key=_opt_unb64(r["ratchet_key"]),
        )

    # --- inspection ----------------------------------------------------------------------------

    def parse_signal_message(self, body: bytes) -> SignalMessageInfo:
        """Deserializes a ``SignalMessage`` (libsignal validates it) and reports its fields."""
        return _signal_message_info(self.call("parse_signal_message", body=_b64(body)))

    def parse_prekey_message(self, body: bytes) -> PreKeyMessageInfo:
        """Deserializes a ``PreKeySignalMessage`` and reports its fields and inner message."""
        r = self.call("parse_prekey_message", body=_b64(body))
        return PreKeyMessageInfo(
            message_version=int(r["message_version"]),
            version_byte=int(r["version_byte"]),
            registration_id=int(r["registration_id"]),
            pre_key_id=r["pre_key_id"],
            signed_pre_key_id=int(r["signed_pre_key_id"]),
            kyber_pre_key_id=r["kyber_pre_key_id"],
            kyber_ciphertext=_opt_unb64(r["kyber_ciphertext"]),
            base_key=_unb64(r["base_key"]),
            identity_key=_unb64(r["identity_key"]),
            message=_unb64(r["message"]),
            signal_message=_signal_message_info(r["signal_message"]),
        )

    def parse_session_record(self, record: bytes) -> dict[str, Any]:
        """Decodes a serialized ``SessionRecord``: ``{"session", "previous_sessions"}``."""
        return self.call("parse_session_record", record=_b64(record))
