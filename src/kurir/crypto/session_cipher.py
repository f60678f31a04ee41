"""The public 1:1 operations: start a session, encrypt, decrypt, against the stores.

Owns: `process_prekey_bundle`, `message_encrypt`, `message_decrypt`, `message_decrypt_signal`
and `message_decrypt_prekey`, which mirror libsignal's functions of the same names
(``rust/protocol/src/session.rs`` and ``session_cipher.rs``) so that the same operation can be
driven on both implementations. Each one loads what it needs, works on copies, checks trust,
and writes the stores only when everything succeeded: a failure changes nothing.

What is deliberately like libsignal:

* trust: a bundle's or PreKeySignalMessage's identity is checked before PQXDH; a
  `SignalMessage`'s after decryption (the session names the identity); encryption checks it
  after building the message and then stores nothing if it is not trusted;
* a PreKeySignalMessage whose base key matches a session we already have reuses it (the
  initiator repeats its PQXDH data until answered), so prekeys are consumed once;
* a one-time prekey is removed and a KEM prekey marked used only after decryption succeeded;
* a session whose PreKeySignalMessage went unanswered for 30 days is not used to send
  (`NoSessionError`: fetch a bundle and start again).

SPQR: kurir sends no ``pq_ratchet`` bytes, which libsignal 0.90 accepts by negotiating SPQR down
(its ``min_version`` is V0 until 0.92); a peer's bytes are MAC-checked and ignored.
"""

from __future__ import annotations

from datetime import datetime

from kurir.crypto import pqxdh, ratchet
from kurir.crypto.address import ProtocolAddress
from kurir.crypto.curve import KeyPair, Rng
from kurir.crypto.errors import (
    InvalidArgumentError,
    InvalidPreKeyMessageError,
    NoSessionError,
    UntrustedIdentityError,
)
from kurir.crypto.messages import CiphertextMessage, PreKeySignalMessage, SignalMessage
from kurir.crypto.prekeys import KyberPreKeyId, PreKeyBundle, PreKeyId, SignedPreKeyId
from kurir.crypto.session import PendingPreKey, SessionRecord, SessionState
from kurir.crypto.stores import (
    Direction,
    IdentityKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)


def _seconds(now: datetime) -> int:
    if now.tzinfo is None:
        raise InvalidArgumentError("now must be timezone-aware")
    return int(now.timestamp())


def process_prekey_bundle(
    bundle: PreKeyBundle,
    remote_address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    *,
    now: datetime,
    rng: Rng,
) -> None:
    """Starts a session with a peer device from its bundle (PQXDH, initiator side).

    The new session becomes current; the next `message_encrypt` returns a PreKeySignalMessage,
    and so do all until the peer answers.

    Args:
        bundle: the bundle fetched from the server.
        remote_address: the peer device.
        session_store: where the record is kept.
        identity_store: our identity; the peer's identity is checked and saved.
        now: the current time (timezone-aware); a session unanswered for 30 days goes stale.
        rng: randomness for the ephemeral keys and the KEM.

    Raises:
        UntrustedIdentityError: the bundle's identity differs from the one trusted.
        InvalidPreKeyBundleError: a prekey signature does not verify.
        InvalidKeyError: a bundle key is unusable (small order).
    """
    their_identity = bundle.identity_key
    if not identity_store.is_trusted_identity(remote_address, their_identity, Direction.SENDING):
        raise UntrustedIdentityError(str(remote_address))
    bundle.verify_signatures()
    timestamp = _seconds(now)

    record = session_store.load_session(remote_address) or SessionRecord()
    base_key = KeyPair.generate(rng)
    alice = pqxdh.initialize_alice(
        our_identity=identity_store.get_identity_key_pair(),
        our_base_key=base_key,
        their_identity=their_identity,
        their_signed_pre_key=bundle.signed_pre_key,
        their_one_time_pre_key=bundle.pre_key,
        their_kyber_pre_key=bundle.kem_pre_key,
        rng=rng,
    )
    state = alice.state
    state.pending_pre_key = PendingPreKey(
        pre_key_id=bundle.pre_key_id,
        signed_pre_key_id=bundle.signed_pre_key_id,
        base_key=base_key.public_key,
        timestamp_s=timestamp,
        kyber_pre_key_id=bundle.kyber_pre_key_id,
        kyber_ciphertext=alice.kyber_ciphertext,
    )
    state.local_registration_id = identity_store.get_local_registration_id()
    state.remote_registration_id = bundle.registration_id

    identity_store.save_identity(remote_address, their_identity)
    record.promote_state(state)
    session_store.store_session(remote_address, record)


def message_encrypt(
    plaintext: bytes,
    remote_address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    *,
    now: datetime,
) -> CiphertextMessage:
    """Encrypts one message for a peer device with its current session.

    Args:
        plaintext: the padded content to send.
        remote_address: the peer device.
        session_store: holds the session; advanced on success.
        identity_store: the peer's identity is checked (and saved) before anything is stored.
        now: the current time (timezone-aware), to refuse stale sessions.

    Returns:
        A `PreKeySignalMessage` while the peer has not answered, else a `SignalMessage`. Send
        ``message.serialize()`` with ``message.message_type``.

    Raises:
        NoSessionError: no current session, or it is stale: process a new bundle first.
        UntrustedIdentityError: the session's identity is no longer trusted.
    """
    _seconds(now)  # refuses a naive datetime
    record = session_store.load_session(remote_address)
    if record is None or record.current is None:
        raise NoSessionError(str(remote_address))
    state = record.current.clone()
    pending = state.pending_pre_key
    if pending is not None and state.is_stale(now):
        raise NoSessionError(str(remote_address))

    signal_message = ratchet.encrypt(state, plaintext)
    message: CiphertextMessage
    if pending is not None:
        message = PreKeySignalMessage.create(
            registration_id=state.local_registration_id,
            pre_key_id=pending.pre_key_id,
            signed_pre_key_id=pending.signed_pre_key_id,
            kyber_pre_key_id=pending.kyber_pre_key_id,
            kyber_ciphertext=pending.kyber_ciphertext,
            base_key=pending.base_key,
            identity_key=state.local_identity,
            message=signal_message,
        )
    else:
        message = signal_message

    their_identity = state.remote_identity
    if not identity_store.is_trusted_identity(remote_address, their_identity, Direction.SENDING):
        raise UntrustedIdentityError(str(remote_address))
    identity_store.save_identity(remote_address, their_identity)
    record.current = state
    session_store.store_session(remote_address, record)
    return message


def message_decrypt(
    message: CiphertextMessage,
    remote_address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    pre_key_store: PreKeyStore,
    signed_pre_key_store: SignedPreKeyStore,
    kyber_pre_key_store: KyberPreKeyStore,
    *,
    rng: Rng,
) -> bytes:
    """Decrypts either kind of message; see the two functions it dispatches to."""
    match message:
        case SignalMessage():
            return message_decrypt_signal(
                message, remote_address, session_store, identity_store, rng=rng
            )
        case PreKeySignalMessage():
            return message_decrypt_prekey(
                message,
                remote_address,
                session_store,
                identity_store,
                pre_key_store,
                signed_pre_key_store,
                kyber_pre_key_store,
                rng=rng,
            )
        case _:
            raise InvalidArgumentError("message_decrypt takes a 1:1 ciphertext message")


def message_decrypt_signal(
    message: SignalMessage,
    remote_address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    *,
    rng: Rng,
) -> bytes:
    """Decrypts a `SignalMessage` with the current or a previous session (Sesame).

    Args:
        message: the parsed message.
        remote_address: the sending device.
        session_store: holds the record; the state that decrypted becomes current.
        identity_store: the session's identity must still be trusted.
        rng: randomness for our next ratchet key when the peer's ratchet key is new.

    Returns:
        The plaintext.

    Raises:
        NoSessionError: there is no record for the sender (ask it to start a new session).
        DuplicateMessageError: already decrypted; drop it silently.
        InvalidMessageError: no session can decrypt it (bad MAC, too far ahead, ...).
        UntrustedIdentityError: the session's identity is no longer trusted.
    """
    record = session_store.load_session(remote_address)
    if record is None:
        raise NoSessionError(str(remote_address))
    plaintext = record.trial_decrypt(
        lambda state: ratchet.decrypt(state, message, rng), prekey=False
    )
    state = _current(record)
    their_identity = state.remote_identity
    if not identity_store.is_trusted_identity(remote_address, their_identity, Direction.RECEIVING):
        raise UntrustedIdentityError(str(remote_address))
    identity_store.save_identity(remote_address, their_identity)
    session_store.store_session(remote_address, record)
    return plaintext


def message_decrypt_prekey(
    message: PreKeySignalMessage,
    remote_address: ProtocolAddress,
    session_store: SessionStore,
    identity_store: IdentityKeyStore,
    pre_key_store: PreKeyStore,
    signed_pre_key_store: SignedPreKeyStore,
    kyber_pre_key_store: KyberPreKeyStore,
    *,
    rng: Rng,
) -> bytes:
    """Decrypts a PreKeySignalMessage, starting the session it carries (PQXDH, responder).

    Args:
        message: the parsed message.
        remote_address: the sending device.
        session_store: holds the record; the new (or matching) session becomes current.
        identity_store: the sender's identity is checked, then saved.
        pre_key_store: the one-time prekey named is used, then removed.
        signed_pre_key_store: the signed prekey named.
        kyber_pre_key_store: the KEM prekey named is used, then marked used.
        rng: randomness for our next ratchet key.

    Returns:
        The plaintext.

    Raises:
        UntrustedIdentityError: the sender's identity differs from the one trusted.
        InvalidPreKeyMessageError: a named prekey is unknown (used or never made), or PQXDH fails.
        DuplicateMessageError: already decrypted; drop it silently.
        InvalidMessageError: the enclosed message does not decrypt.
    """
    their_identity = message.identity_key
    if not identity_store.is_trusted_identity(remote_address, their_identity, Direction.RECEIVING):
        raise UntrustedIdentityError(str(remote_address))

    record = session_store.load_session(remote_address) or SessionRecord()
    used: tuple[PreKeyId | None, SignedPreKeyId, KyberPreKeyId] | None = None
    if not record.promote_matching_session(message.message_version, message.base_key.serialize()):
        record.promote_state(
            _bob_state(
                message, identity_store, pre_key_store, signed_pre_key_store, kyber_pre_key_store
            )
        )
        used = (
            None if message.pre_key_id is None else PreKeyId(message.pre_key_id),
            SignedPreKeyId(message.signed_pre_key_id),
            KyberPreKeyId(message.kyber_pre_key_id),
        )

    plaintext = record.trial_decrypt(
        lambda state: ratchet.decrypt(state, message.message, rng), prekey=True
    )

    if used is not None:
        # first, as the only write that may refuse (a replayed last-resort use)
        _, signed_id, kyber_id = used
        kyber_pre_key_store.mark_kyber_pre_key_used(kyber_id, signed_id, message.base_key)
    identity_store.save_identity(remote_address, their_identity)
    if used is not None and used[0] is not None:
        pre_key_store.remove_pre_key(used[0])
    session_store.store_session(remote_address, record)
    return plaintext


def _bob_state(
    message: PreKeySignalMessage,
    identity_store: IdentityKeyStore,
    pre_key_store: PreKeyStore,
    signed_pre_key_store: SignedPreKeyStore,
    kyber_pre_key_store: KyberPreKeyStore,
) -> SessionState:
    signed = signed_pre_key_store.get_signed_pre_key(SignedPreKeyId(message.signed_pre_key_id))
    if signed is None:
        raise InvalidPreKeyMessageError("unknown signed prekey")
    kyber = kyber_pre_key_store.get_kyber_pre_key(KyberPreKeyId(message.kyber_pre_key_id))
    if kyber is None:
        raise InvalidPreKeyMessageError("unknown KEM prekey")
    one_time = None
    if message.pre_key_id is not None:
        record = pre_key_store.get_pre_key(PreKeyId(message.pre_key_id))
        if record is None:
            raise InvalidPreKeyMessageError("unknown one-time prekey")
        one_time = record.key_pair
    state = pqxdh.initialize_bob(
        our_identity=identity_store.get_identity_key_pair(),
        our_signed_pre_key=signed.key_pair,
        our_one_time_pre_key=one_time,
        our_kyber_pre_key=kyber.key_pair,
        their_identity=message.identity_key,
        their_base_key=message.base_key,
        their_kyber_ciphertext=message.kyber_ciphertext,
    )
    state.local_registration_id = identity_store.get_local_registration_id()
    state.remote_registration_id = message.registration_id
    return state


def _current(record: SessionRecord) -> SessionState:
    if record.current is None:  # trial_decrypt always leaves the decrypting state current
        raise InvalidArgumentError("record has no current session after decryption")
    return record.current
