"""The client's seam to the Signal session cipher (`kurir.crypto.session_cipher`).

Owns: translating between kurir's wire shapes and the crypto layer's: a ``GET /v1/keys`` device
bundle into a `PreKeyBundle`, libsignal message types into envelope types (a `SignalMessage`
travels as envelope type 1 CIPHERTEXT, a `PreKeySignalMessage` as type 3 PREKEY_BUNDLE, as in
Signal), account ids into `ProtocolAddress` names, and the client's millisecond clock into the
aware datetimes the cipher takes. It is synchronous and holds no state; callers run every
function inside a `ClientStore.transaction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from kurir.client.keystore import SqliteProtocolStore
from kurir.crypto import session_cipher
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import PublicKey, Rng
from kurir.crypto.errors import InvalidMessageError
from kurir.crypto.kem import KemPublicKey
from kurir.crypto.messages import (
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
    deserialize_ciphertext,
)
from kurir.crypto.prekeys import KyberPreKeyId, PreKeyBundle, PreKeyId, SignedPreKeyId
from kurir.crypto.session import SessionState
from kurir.wire import api
from kurir.wire.frames import EnvelopeType

__all__ = [
    "Sealed",
    "decrypt",
    "encrypt",
    "has_session",
    "remote_registration_id",
    "sender_ratchet_key",
    "start_session",
]


@dataclass(frozen=True, slots=True)
class Sealed:
    """One ciphertext for one device.

    Attributes:
        envelope_type: 1 (CIPHERTEXT) or 3 (PREKEY_BUNDLE).
        body: the serialized libsignal message.
        registration_id: the recipient device's registration id, as our session knows it.
    """

    envelope_type: int
    body: bytes
    registration_id: int


def _address(name: str, device: int) -> ProtocolAddress:
    return ProtocolAddress(name, DeviceId(device))


def _datetime(now_ms: int) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC)


def has_session(store: SqliteProtocolStore, name: str, device: int, *, now_ms: int) -> bool:
    """Tells whether there is a session with that device that may be used to send."""
    record = store.load_session(_address(name, device))
    return record is not None and record.has_usable_sender_chain(_datetime(now_ms))


def remote_registration_id(store: SqliteProtocolStore, name: str, device: int) -> int | None:
    """The registration id of a peer device as any stored session state knows it, or None."""
    record = store.load_session(_address(name, device))
    if record is None:
        return None
    if record.current is not None and record.current.remote_registration_id:
        return int(record.current.remote_registration_id)
    for data in record.archived:
        state = SessionState.deserialize(data)
        if state.remote_registration_id:
            return int(state.remote_registration_id)
    return None


def sender_ratchet_key(store: SqliteProtocolStore, name: str, device: int) -> bytes | None:
    """Our current sending ratchet public key (serialized) in the session with a device."""
    record = store.load_session(_address(name, device))
    if record is None or record.current is None:
        return None
    return record.current.sender_chain.ratchet_key.public_key.serialize()


def start_session(
    store: SqliteProtocolStore,
    name: str,
    identity_key: bytes,
    bundle: api.DeviceBundle,
    *,
    now_ms: int,
    rng: Rng,
) -> None:
    """Starts a session (PQXDH, initiator) with a device from its published keys.

    Raises:
        InvalidKeyError: a published key does not parse.
        InvalidPreKeyBundleError: a signature does not verify, or the bundle is incomplete.
        UntrustedIdentityError: the peer's identity changed and has not been accepted.
    """
    prekey = bundle.prekey
    crypto_bundle = PreKeyBundle(
        registration_id=bundle.registration_id,
        device_id=DeviceId(bundle.device_id),
        pre_key_id=None if prekey is None else PreKeyId(prekey.key_id),
        pre_key=None if prekey is None else PublicKey.deserialize(prekey.public_key),
        signed_pre_key_id=SignedPreKeyId(bundle.signed_prekey.key_id),
        signed_pre_key=PublicKey.deserialize(bundle.signed_prekey.public_key),
        signed_pre_key_signature=bundle.signed_prekey.signature,
        identity_key=PublicKey.deserialize(identity_key),
        kyber_pre_key_id=KyberPreKeyId(bundle.pq_prekey.key_id),
        kyber_pre_key=KemPublicKey.deserialize(bundle.pq_prekey.public_key),
        kyber_pre_key_signature=bundle.pq_prekey.signature,
    )
    session_cipher.process_prekey_bundle(
        crypto_bundle,
        _address(name, bundle.device_id),
        store,
        store,
        now=_datetime(now_ms),
        rng=rng,
    )


def encrypt(
    store: SqliteProtocolStore, name: str, device: int, plaintext: bytes, *, now_ms: int
) -> Sealed:
    """Encrypts padded content for one device with its current session.

    Raises:
        NoSessionError: no usable session (start one first).
        UntrustedIdentityError: the peer's identity changed and has not been accepted.
    """
    address = _address(name, device)
    message = session_cipher.message_encrypt(
        plaintext, address, store, store, now=_datetime(now_ms)
    )
    record = store.load_session(address)
    current = None if record is None else record.current
    registration_id = 0 if current is None else current.remote_registration_id
    match message:
        case PreKeySignalMessage():
            envelope_type = EnvelopeType.PREKEY_BUNDLE
        case SignalMessage():
            envelope_type = EnvelopeType.CIPHERTEXT
    return Sealed(int(envelope_type), message.serialize(), registration_id)


def decrypt(
    store: SqliteProtocolStore, name: str, device: int, envelope_type: int, body: bytes, *, rng: Rng
) -> bytes:
    """Decrypts one envelope body from a peer device.

    Raises:
        InvalidMessageError: not a 1:1 ciphertext, or it does not decrypt.
        DuplicateMessageError: it was decrypted before.
        NoSessionError: a `SignalMessage` from a device we have no session with.
        SignalProtocolError: any other failure of the session cipher.
    """
    match envelope_type:
        case EnvelopeType.CIPHERTEXT:
            message = deserialize_ciphertext(CiphertextMessageType.WHISPER, body)
        case EnvelopeType.PREKEY_BUNDLE:
            message = deserialize_ciphertext(CiphertextMessageType.PREKEY, body)
        case _:
            raise InvalidMessageError(f"envelope type {envelope_type} is not a 1:1 ciphertext")
    return session_cipher.message_decrypt(
        message, _address(name, device), store, store, store, store, store, rng=rng
    )
