"""Known answers recorded from libsignal 0.90.0: PQXDH, PreKeySignalMessages, SignalMessages.

Reads ``libsignal-session.json`` (see its ``notes`` and ``regenerate``): kurir plays Bob with the
recorded keys and must decrypt Alice's recorded messages, agree on the first chain key, and parse
and re-encode libsignal's messages byte for byte. No Node.js needed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair, PrivateKey, PublicKey
from kurir.crypto.errors import DuplicateMessageError, InvalidMessageError
from kurir.crypto.kem import KemKeyPair, KemPublicKey, KemSecretKey
from kurir.crypto.messages import PreKeySignalMessage, SignalMessage
from kurir.crypto.pqxdh import DISCONTINUITY, PQXDH_INFO
from kurir.crypto.prekeys import (
    IdentityKeyPair,
    KyberPreKeyId,
    KyberPreKeyRecord,
    PreKeyId,
    PreKeyRecord,
    SignedPreKeyId,
    SignedPreKeyRecord,
)
from kurir.crypto.ratchet import hkdf_sha256
from kurir.crypto.session_cipher import message_decrypt_prekey
from kurir.crypto.stores import (
    InMemoryIdentityKeyStore,
    InMemoryKyberPreKeyStore,
    InMemoryPreKeyStore,
    InMemorySessionStore,
    InMemorySignedPreKeyStore,
)

VECTORS = json.loads((Path(__file__).parent / "libsignal-session.json").read_text())


def h(value: str) -> bytes:
    return bytes.fromhex(value)


class Bob:
    """Bob rebuilt from the recorded keys."""

    def __init__(self, v: dict[str, Any]) -> None:
        bob = v["bob"]
        private = PrivateKey.deserialize(h(bob["identity_private"]))
        self.identity = IdentityKeyPair(private.public_key(), private)
        assert self.identity.public_key.serialize() == h(bob["identity_public"])
        self.identity_store = InMemoryIdentityKeyStore(self.identity, bob["registration_id"])
        self.pre_keys = InMemoryPreKeyStore()
        self.signed = InMemorySignedPreKeyStore()
        self.kyber = InMemoryKyberPreKeyStore()
        self.sessions = InMemorySessionStore()
        one_time = KeyPair.from_private_key(PrivateKey.deserialize(h(bob["prekey_private"])))
        self.pre_keys.save_pre_key(
            PreKeyId(bob["prekey_id"]), PreKeyRecord(PreKeyId(bob["prekey_id"]), one_time)
        )
        signed = KeyPair.from_private_key(PrivateKey.deserialize(h(bob["signed_prekey_private"])))
        self.signed.save_signed_pre_key(
            SignedPreKeyId(bob["signed_prekey_id"]),
            SignedPreKeyRecord(
                SignedPreKeyId(bob["signed_prekey_id"]),
                bob["signed_prekey_timestamp"],
                signed,
                h(bob["signed_prekey_signature"]),
            ),
        )
        kem = KemKeyPair(
            KemPublicKey.deserialize(h(bob["kyber_prekey_public"])),
            KemSecretKey.deserialize(h(bob["kyber_prekey_secret"])),
        )
        self.kyber.save_kyber_pre_key(
            KyberPreKeyId(bob["kyber_prekey_id"]),
            KyberPreKeyRecord(
                KyberPreKeyId(bob["kyber_prekey_id"]),
                bob["kyber_prekey_timestamp"],
                kem,
                h(bob["kyber_prekey_signature"]),
            ),
            last_resort=False,
        )
        self.alice = ProtocolAddress(v["alice"]["address"], DeviceId(v["alice"]["device_id"]))
        self.rng = random.Random(7).randbytes

    def decrypt(self, body: bytes) -> bytes:
        return message_decrypt_prekey(
            PreKeySignalMessage.deserialize(body),
            self.alice,
            self.sessions,
            self.identity_store,
            self.pre_keys,
            self.signed,
            self.kyber,
            rng=self.rng,
        )


def test_bob_decrypts_libsignal_prekey_messages_out_of_order() -> None:
    bob = Bob(VECTORS)
    messages = VECTORS["prekey_messages"]
    for index in VECTORS["receive_order"]:
        message = messages[index]
        assert bob.decrypt(h(message["body"])) == h(message["plaintext"])
    # the one-time prekey was consumed once, and the session knows Alice's identity
    assert bob.pre_keys.get_pre_key(PreKeyId(VECTORS["bob"]["prekey_id"])) is None
    assert bob.identity_store.get_identity(bob.alice) == PublicKey.deserialize(
        h(VECTORS["alice"]["identity_public"])
    )


def test_replayed_libsignal_prekey_message_is_a_duplicate() -> None:
    bob = Bob(VECTORS)
    body = h(VECTORS["prekey_messages"][1]["body"])
    bob.decrypt(body)
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(body)


def test_tampered_libsignal_prekey_message_is_rejected_and_changes_nothing() -> None:
    bob = Bob(VECTORS)
    body = bytearray(h(VECTORS["prekey_messages"][1]["body"]))
    body[-3] ^= 1  # inside the enclosed SignalMessage's MAC
    with pytest.raises(InvalidMessageError):
        bob.decrypt(bytes(body))
    assert bob.sessions.load_session(bob.alice) is None
    assert bob.pre_keys.get_pre_key(PreKeyId(VECTORS["bob"]["prekey_id"])) is not None
    genuine = VECTORS["prekey_messages"][1]
    assert bob.decrypt(h(genuine["body"])) == h(genuine["plaintext"])


def test_pqxdh_first_chain_key_matches_libsignal() -> None:
    bob = VECTORS["bob"]
    pqxdh = VECTORS["pqxdh"]
    assert pqxdh["label"].encode() == PQXDH_INFO
    identity = PrivateKey.deserialize(h(bob["identity_private"]))
    signed = PrivateKey.deserialize(h(bob["signed_prekey_private"]))
    one_time = PrivateKey.deserialize(h(bob["prekey_private"]))
    alice_identity = PublicKey.deserialize(h(VECTORS["alice"]["identity_public"]))
    base = PublicKey.deserialize(h(pqxdh["base_key"]))
    kem = KemSecretKey.deserialize(h(bob["kyber_prekey_secret"]))
    shared = kem.decapsulate(h(pqxdh["kyber_ciphertext"]))
    assert shared == h(pqxdh["kyber_shared_secret"])
    secret = (
        DISCONTINUITY
        + signed.agree(alice_identity)
        + identity.agree(base)
        + signed.agree(base)
        + one_time.agree(base)
        + shared
    )
    okm = hkdf_sha256(secret, salt=None, info=PQXDH_INFO, length=96)
    assert okm[32:64] == h(pqxdh["alice_first_receiving_chain_key"])


@pytest.mark.parametrize("message", VECTORS["prekey_messages"], ids=lambda m: str(m["index"]))
def test_prekey_message_parses_and_reencodes_byte_for_byte(message: dict[str, Any]) -> None:
    body = h(message["body"])
    fields = message["fields"]
    parsed = PreKeySignalMessage.deserialize(body)
    assert parsed.registration_id == fields["registration_id"]
    assert parsed.pre_key_id == fields["pre_key_id"]
    assert parsed.signed_pre_key_id == fields["signed_pre_key_id"]
    assert parsed.kyber_pre_key_id == fields["kyber_pre_key_id"]
    assert parsed.kyber_ciphertext == h(fields["kyber_ciphertext"])
    assert parsed.base_key.serialize() == h(fields["base_key"])
    assert parsed.identity_key.serialize() == h(fields["identity_key"])
    assert parsed.message.counter == fields["counter"]
    assert parsed.message.pq_ratchet == h(fields["pq_ratchet"])
    assert parsed.message.serialized[-8:] == h(fields["mac"])
    again = PreKeySignalMessage.create(
        registration_id=parsed.registration_id,
        pre_key_id=parsed.pre_key_id,
        signed_pre_key_id=parsed.signed_pre_key_id,
        kyber_pre_key_id=parsed.kyber_pre_key_id,
        kyber_ciphertext=parsed.kyber_ciphertext,
        base_key=parsed.base_key,
        identity_key=parsed.identity_key,
        message=parsed.message,
    )
    assert again.serialize() == body


@pytest.mark.parametrize("message", VECTORS["conversation"], ids=lambda m: m["from"])
def test_signal_message_fields_and_spqr_bytes_parse(message: dict[str, Any]) -> None:
    parsed = SignalMessage.deserialize(h(message["body"]))
    fields = message["fields"]
    assert parsed.serialized[0] == 0x44
    assert parsed.counter == fields["counter"]
    assert parsed.previous_counter == fields["previous_counter"]
    assert parsed.sender_ratchet_key.serialize() == h(fields["ratchet_key"])
    assert parsed.pq_ratchet == h(fields["pq_ratchet"])
    assert parsed.serialized[-8:] == h(fields["mac"])
