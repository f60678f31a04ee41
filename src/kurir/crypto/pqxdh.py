"""PQXDH, the only way a kurir session starts: the initial shared secret of both parties.

Owns: the PQXDH key agreement as libsignal implements it (``rust/protocol/src/ratchet.rs``,
``initialize_alice_session`` / ``initialize_bob_session``) and the first `SessionState` of each
side. Knows nothing of stores, trust or messages: `kurir.crypto.session_cipher` fetches the keys,
checks the bundle's signatures and the identity, and wraps the result in messages.

Signal's "The PQXDH Key Agreement Protocol" (rev. 3), section 3.3, in libsignal's form:

* ``F = 0xFF * 32`` ("discontinuity bytes", section 2.5), then the X25519 outputs in the order
  ``DH(IK_A, SPK_B)``, ``DH(EK_A, IK_B)``, ``DH(EK_A, SPK_B)`` and, when a one-time prekey was
  used, ``DH(EK_A, OPK_B)``, then the KEM shared secret ``SS``;
* ``HKDF-SHA256(salt = none, ikm = F || DH1 || DH2 || DH3 [|| DH4] || SS,
  info = "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024")``, 96 bytes: the root key, the first
  chain key, and the SPQR authentication key (unused by kurir: SPQR is negotiated down). The label
  is the same whichever KEM type the prekey has;
* Bob's signed prekey doubles as his first ratchet key (libsignal passes it as both); Alice makes
  a fresh ratchet key pair and takes one DH ratchet step at once, so her first messages are
  already on a sending chain of her own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from nacl.bindings import crypto_core_ed25519_is_valid_point

from kurir.crypto.curve import KeyPair, PublicKey, Rng
from kurir.crypto.errors import InvalidMessageError, InvalidPreKeyMessageError
from kurir.crypto.kem import KemKeyPair, KemPublicKey
from kurir.crypto.messages import CURRENT_VERSION
from kurir.crypto.prekeys import IdentityKeyPair
from kurir.crypto.ratchet import hkdf_sha256, root_kdf
from kurir.crypto.session import ChainKey, SenderChain, SessionState

PQXDH_INFO: Final = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
"""The HKDF info libsignal uses for every version-4 (PQXDH) session."""

DISCONTINUITY: Final = b"\xff" * 32
"""PQXDH section 2.5: 32 0xFF bytes in front of the X25519 outputs."""


_P: Final = 2**255 - 19


def is_canonical(key: PublicKey) -> bool:
    """libsignal's check on an incoming base key: ``u < 2^255 - 19`` and torsion-free.

    Torsion-free means the Edwards image (sign bit 0) lies in the prime-order subgroup; honest
    X25519 keys always do (their scalars are multiples of the cofactor).
    """
    u = int.from_bytes(key.key, "little")
    if u >= _P or u == _P - 1:
        return False
    y = (u - 1) * pow(u + 1, -1, _P) % _P  # the inverse by Euclid: 5 times faster than Fermat
    return bool(crypto_core_ed25519_is_valid_point(y.to_bytes(32, "little")))


def _derive(secret_input: bytes) -> tuple[bytes, ChainKey]:
    okm = hkdf_sha256(secret_input, salt=None, info=PQXDH_INFO, length=96)
    return okm[:32], ChainKey(okm[32:64], 0)


@dataclass(frozen=True, slots=True)
class AliceSession:
    """The initiator's result.

    Attributes:
        state: the new session state (its sending chain already ratcheted once).
        kyber_ciphertext: the KEM ciphertext to send in every PreKeySignalMessage.
    """

    state: SessionState
    kyber_ciphertext: bytes


def initialize_alice(
    *,
    our_identity: IdentityKeyPair,
    our_base_key: KeyPair,
    their_identity: PublicKey,
    their_signed_pre_key: PublicKey,
    their_one_time_pre_key: PublicKey | None,
    their_kyber_pre_key: KemPublicKey,
    rng: Rng,
) -> AliceSession:
    """PQXDH from the initiator's side (after the bundle's signatures were verified).

    Args:
        our_identity: our identity key pair.
        our_base_key: the fresh ephemeral key pair ``EK_A``; its public key goes in the message.
        their_identity: the peer's identity key ``IK_B``.
        their_signed_pre_key: ``SPK_B``, also the peer's first ratchet key.
        their_one_time_pre_key: ``OPK_B`` when the bundle had one.
        their_kyber_pre_key: ``PQPK_B``.
        rng: randomness for the KEM and for our first ratchet key pair.

    Raises:
        InvalidKeyError: a peer key is of small order.
    """
    secret = bytearray(DISCONTINUITY)
    secret += our_identity.private_key.agree(their_signed_pre_key)
    secret += our_base_key.private_key.agree(their_identity)
    secret += our_base_key.private_key.agree(their_signed_pre_key)
    if their_one_time_pre_key is not None:
        secret += our_base_key.private_key.agree(their_one_time_pre_key)
    shared_secret, kyber_ciphertext = their_kyber_pre_key.encapsulate(rng)
    secret += shared_secret
    root_key, receiving = _derive(bytes(secret))

    ratchet_key = KeyPair.generate(rng)
    root_key, sending = root_kdf(root_key, their_signed_pre_key, ratchet_key)
    state = SessionState(
        session_version=CURRENT_VERSION,
        local_identity=our_identity.public_key,
        remote_identity=their_identity,
        root_key=root_key,
        previous_counter=0,
        sender_chain=SenderChain(ratchet_key, sending),
        alice_base_key=our_base_key.public_key.serialize(),
    )
    state.add_receiver_chain(their_signed_pre_key, receiving)
    return AliceSession(state, kyber_ciphertext)


def initialize_bob(
    *,
    our_identity: IdentityKeyPair,
    our_signed_pre_key: KeyPair,
    our_one_time_pre_key: KeyPair | None,
    our_kyber_pre_key: KemKeyPair,
    their_identity: PublicKey,
    their_base_key: PublicKey,
    their_kyber_ciphertext: bytes,
) -> SessionState:
    """PQXDH from the responder's side, on receiving a PreKeySignalMessage.

    Args:
        our_identity: our identity key pair.
        our_signed_pre_key: the signed prekey the message names (also our first ratchet key).
        our_one_time_pre_key: the one-time prekey the message names, if any.
        our_kyber_pre_key: the KEM prekey the message names.
        their_identity: the initiator's identity key.
        their_base_key: the initiator's ephemeral key ``EK_A``.
        their_kyber_ciphertext: the KEM ciphertext from the message.

    Raises:
        InvalidPreKeyMessageError: a key is of small order or the KEM ciphertext is unusable.
    """
    if not is_canonical(their_base_key):
        raise InvalidPreKeyMessageError("incoming base key is invalid")
    try:
        secret = bytearray(DISCONTINUITY)
        secret += our_signed_pre_key.private_key.agree(their_identity)
        secret += our_identity.private_key.agree(their_base_key)
        secret += our_signed_pre_key.private_key.agree(their_base_key)
        if our_one_time_pre_key is not None:
            secret += our_one_time_pre_key.private_key.agree(their_base_key)
        secret += our_kyber_pre_key.secret_key.decapsulate(their_kyber_ciphertext)
    except InvalidMessageError:
        raise
    except Exception as exc:
        raise InvalidPreKeyMessageError("PQXDH failed") from exc
    root_key, sending = _derive(bytes(secret))
    return SessionState(
        session_version=CURRENT_VERSION,
        local_identity=our_identity.public_key,
        remote_identity=their_identity,
        root_key=root_key,
        previous_counter=0,
        sender_chain=SenderChain(our_signed_pre_key, sending),
        alice_base_key=their_base_key.serialize(),
    )
