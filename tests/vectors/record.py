"""Records libsignal known-answer transcripts into tests/vectors/libsignal-*.json.

Owns: driving @signalapp/libsignal-client (through the interop harness) to produce the recorded
vectors kurir's crypto tests read without Node.js, and checking each transcript by replaying it
through libsignal before writing it. Knows nothing of kurir.

Regenerate (from the repository root; needs Node.js):

    (cd tests/interop/harness && npm ci) && .venv/bin/python tests/vectors/record.py

Every file says the same in its ``regenerate`` field. Inputs are fixed (private keys are
SHA-256 of a label) wherever libsignal takes them from outside; what libsignal randomizes
(XEdDSA nonces, Kyber key generation, ephemeral and ratchet keys, sealed-sender ephemerals)
differs on every run, so regenerating rewrites those bytes. Binary values are lowercase hex.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from kyber_py.kyber import Kyber1024

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))

from libsignal import (
    LIBRARY_VERSION,
    Ciphertext,
    CiphertextType,
    Libsignal,
    LibsignalError,
    PreKeyBundle,
)

VECTORS_DIR = Path(__file__).resolve().parent
REGENERATE = "(cd tests/interop/harness && npm ci) && .venv/bin/python tests/vectors/record.py"
LIBRARY = f"@signalapp/libsignal-client {LIBRARY_VERSION}"

ALICE = "9d0652a3-dcc3-4d11-975f-74d61598733f"
BOB = "796abedb-ca4e-4f18-8803-1fde5b921f9f"
PREKEY_TIMESTAMP = 1_700_000_000_000
CERT_EXPIRATION = 2_000_000_000_000
VALIDATION_TIME = 1_800_000_000_000
PQXDH_LABEL = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"


def seed(label: str) -> bytes:
    """A fixed 32-byte private key: SHA-256 of ``kurir-vectors/<label>``."""
    return hashlib.sha256(f"kurir-vectors/{label}".encode()).digest()


def h(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def header(description: str, notes: list[str]) -> dict[str, Any]:
    return {
        "description": description,
        "library": LIBRARY,
        "generator": "tests/vectors/record.py",
        "regenerate": REGENERATE,
        "encoding": "binary values are lowercase hex; public keys are serialized (0x05 + 32)",
        "notes": notes,
    }


def write(name: str, content: dict[str, Any]) -> None:
    path = VECTORS_DIR / f"libsignal-{name}.json"
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(VECTORS_DIR.parents[1])}")


# --- primitives ---------------------------------------------------------------------------------


def record_xeddsa(ls: Libsignal) -> None:
    messages = [
        b"",
        b"kurir",
        bytes(range(256)),
        ls.public_key(seed("xeddsa/as-message")),
        b"\x00" * 1000,
    ]
    cases: list[dict[str, Any]] = []
    for i in range(6):
        private = seed(f"xeddsa/{i}")
        public = ls.public_key(private)
        message = messages[i % len(messages)]
        for _ in range(2):  # randomized: two signatures of the same message
            sig = ls.sign(private, message)
            assert ls.verify(public, message, sig)
            cases.append(
                {
                    "private": h(private),
                    "public": h(public),
                    "message": h(message),
                    "signature": h(sig),
                    "valid": True,
                    "tamper": None,
                }
            )
    private = seed("xeddsa/tamper")
    public = ls.public_key(private)
    message = b"tamper with me"
    sig = ls.sign(private, message)

    def flip(data: bytes, index: int, mask: int) -> bytes:
        out = bytearray(data)
        out[index] ^= mask
        return bytes(out)

    other_public = ls.public_key(seed("xeddsa/other"))
    tampered: list[tuple[str, bytes, bytes, bytes]] = [
        ("none", public, message, sig),
        ("R byte 0 bit 0 flipped", public, message, flip(sig, 0, 0x01)),
        ("s byte 32 bit 0 flipped", public, message, flip(sig, 32, 0x01)),
        ("byte 63 bit 7 (sign of A) flipped", public, message, flip(sig, 63, 0x80)),
        ("byte 63 bit 6 set (s not reduced)", public, message, flip(sig, 63, 0x40)),
        ("byte 63 bit 5 set (s not reduced)", public, message, flip(sig, 63, 0x20)),
        ("message changed", public, b"tamper with mf", sig),
        ("other public key", other_public, message, sig),
        ("signature truncated to 63 bytes", public, message, sig[:63]),
    ]
    for label, key, msg, signature in tampered:
        valid = ls.verify(key, msg, signature)
        cases.append(
            {
                "private": h(private) if key == public else None,
                "public": h(key),
                "message": h(msg),
                "signature": h(signature),
                "valid": valid,
                "tamper": label,
            }
        )
    write(
        "xeddsa",
        {
            **header(
                "XEdDSA signatures by libsignal's PrivateKey.sign, checked by PublicKey.verify",
                [
                    "Signatures are randomized (64-byte random nonce input): re-recording "
                    "changes them; a verifier must accept every valid=true case.",
                    "valid is what libsignal's PublicKey.verify answered; tamper says what was "
                    "changed from the valid signature just above the tampered block.",
                ],
            ),
            "cases": cases,
        },
    )


def record_x25519(ls: Libsignal) -> None:
    cases: list[dict[str, Any]] = []
    privates = [(seed(f"x25519/{i}/a"), seed(f"x25519/{i}/b")) for i in range(5)]
    privates.append((b"\xff" * 32, seed("x25519/unclamped/b")))
    privates.append((b"\x00" * 32, b"\x01" + b"\x00" * 31))
    for a, b in privates:
        a_pub, b_pub = ls.public_key(a), ls.public_key(b)
        shared = ls.agree(a, b_pub)
        assert shared == ls.agree(b, a_pub)
        cases.append(
            {
                "private_a": h(a),
                "public_a": h(a_pub),
                "private_b": h(b),
                "public_b": h(b_pub),
                "shared": h(shared),
                "error": None,
            }
        )
    # Low-order public key (all zero u-coordinate).
    a = seed("x25519/low-order")
    zero = b"\x05" + b"\x00" * 32
    try:
        shared_or_none: bytes | None = ls.agree(a, zero)
        error = None
    except LibsignalError as err:
        shared_or_none = None
        error = f"{err.code}: {err.message}"
    cases.append(
        {
            "private_a": h(a),
            "public_a": h(ls.public_key(a)),
            "private_b": None,
            "public_b": h(zero),
            "shared": h(shared_or_none),
            "error": error,
        }
    )
    write(
        "x25519",
        {
            **header(
                "X25519 agreements by libsignal's PrivateKey.agree and PrivateKey.getPublicKey",
                [
                    "Private keys are given as stored (libsignal clamps when it uses them), "
                    "including an all-0xff and an all-zero one.",
                    "The last case agrees with the all-zero (low-order) public key: shared or "
                    "error is what libsignal gave.",
                ],
            ),
            "cases": cases,
        },
    )


def record_fingerprints(ls: Libsignal) -> None:
    cases: list[dict[str, Any]] = []
    ids = [
        (bytes.fromhex(ALICE.replace("-", "")), bytes.fromhex(BOB.replace("-", ""))),
        (bytes(16), b"\xff" * 16),
        (hashlib.sha256(b"a").digest()[:16], hashlib.sha256(b"b").digest()[:16]),
        (b"+14152222222", b"+14153333333"),
    ]
    for i, (local_id, remote_id) in enumerate(ids):
        local_key = ls.public_key(seed(f"fingerprint/{i}/local"))
        remote_key = ls.public_key(seed(f"fingerprint/{i}/remote"))
        fp = ls.fingerprint(local_id, local_key, remote_id, remote_key)
        back = ls.fingerprint(remote_id, remote_key, local_id, local_key)
        assert fp.display == back.display
        assert ls.fingerprint_compare(fp.scannable, back.scannable)
        cases.append(
            {
                "iterations": 5200,
                "version": 2,
                "local_id": h(local_id),
                "local_key": h(local_key),
                "remote_id": h(remote_id),
                "remote_key": h(remote_key),
                "display": fp.display,
                "scannable": h(fp.scannable),
                "remote_scannable": h(back.scannable),
            }
        )
    write(
        "fingerprint",
        {
            **header(
                "Safety numbers by libsignal's Fingerprint.new(5200, 2, localId, localKey, "
                "remoteId, remoteKey)",
                [
                    "Deterministic: identical on every run.",
                    "Identifiers are raw bytes (Signal passes the 16 UUID bytes); the last case "
                    "uses E.164 strings as bytes.",
                    "remote_scannable is the remote side's scannable encoding; "
                    "ScannableFingerprint.compare(scannable, remote_scannable) is true.",
                ],
            ),
            "cases": cases,
        },
    )


# --- 1:1 sessions and Kyber -------------------------------------------------------------------


def _pqxdh_check(
    ls: Libsignal,
    *,
    bob_identity_private: bytes,
    signed_prekey_private: bytes,
    prekey_private: bytes | None,
    kyber_secret: bytes,
    alice_identity: bytes,
    base_key: bytes,
    kyber_ciphertext: bytes,
    alice_chain_key: bytes,
) -> bytes:
    """Decapsulates with kyber-py and proves the secret right against libsignal's derivation.

    Alice's session keeps the first receiving chain key, the second 32 bytes of
    HKDF-SHA256(salt none, 0xff*32 || DH1 || DH2 || DH3 [|| DH4] || SS, PQXDH label).
    """
    shared = bytes(Kyber1024.decaps(kyber_secret[1:], kyber_ciphertext[1:]))
    ikm = b"\xff" * 32
    ikm += ls.agree(signed_prekey_private, alice_identity)
    ikm += ls.agree(bob_identity_private, base_key)
    ikm += ls.agree(signed_prekey_private, base_key)
    if prekey_private is not None:
        ikm += ls.agree(prekey_private, base_key)
    ikm += shared
    okm = HKDF(hashes.SHA256(), 96, None, PQXDH_LABEL).derive(ikm)
    if okm[32:64] != alice_chain_key:
        raise SystemExit("kyber-py's shared secret does not reproduce libsignal's PQXDH keys")
    return shared


def _signal_fields(ls: Libsignal, message: Ciphertext) -> dict[str, Any]:
    if message.type == CiphertextType.PREKEY:
        pre = ls.parse_prekey_message(message.body)
        inner = pre.signal_message
        fields: dict[str, Any] = {
            "registration_id": pre.registration_id,
            "pre_key_id": pre.pre_key_id,
            "signed_pre_key_id": pre.signed_pre_key_id,
            "kyber_pre_key_id": pre.kyber_pre_key_id,
            "kyber_ciphertext": h(pre.kyber_ciphertext),
            "base_key": h(pre.base_key),
            "identity_key": h(pre.identity_key),
        }
    else:
        inner = ls.parse_signal_message(message.body)
        fields = {}
    fields.update(
        {
            "message_version": inner.message_version,
            "counter": inner.counter,
            "previous_counter": inner.previous_counter,
            "ratchet_key": h(inner.ratchet_key),
            "pq_ratchet": h(inner.pq_ratchet),
            "mac": h(inner.mac),
        }
    )
    return fields


def _bob(ls: Libsignal, label: str, *, one_time: bool = True) -> dict[str, Any]:
    """Bob with fixed EC keys and a libsignal-generated Kyber1024 prekey; returns all keys."""
    identity = seed(f"{label}/bob/identity")
    bob = ls.create_participant("bob", address=BOB, identity_private=identity, registration_id=4242)
    prekey_private = seed(f"{label}/bob/prekey") if one_time else None
    prekey = ls.add_prekey("bob", 31, prekey_private) if prekey_private is not None else None
    signed_private = seed(f"{label}/bob/signed-prekey")
    signed = ls.add_signed_prekey("bob", 7, signed_private, timestamp=PREKEY_TIMESTAMP)
    kyber_public, kyber_secret = ls.kem_generate()
    kyber = ls.add_kyber_prekey("bob", 9, kyber_public, kyber_secret, timestamp=PREKEY_TIMESTAMP)
    assert signed.signature is not None
    assert kyber.signature is not None
    bundle = PreKeyBundle(
        registration_id=bob.registration_id,
        device_id=1,
        identity_key=bob.identity_public,
        prekey_id=31 if prekey is not None else None,
        prekey_public=prekey.public if prekey is not None else None,
        signed_prekey_id=7,
        signed_prekey_public=signed.public,
        signed_prekey_signature=signed.signature,
        kyber_prekey_id=9,
        kyber_prekey_public=kyber_public,
        kyber_prekey_signature=kyber.signature,
    )
    return {
        "bundle": bundle,
        "keys": {
            "address": BOB,
            "device_id": 1,
            "registration_id": bob.registration_id,
            "identity_private": h(identity),
            "identity_public": h(bob.identity_public),
            "prekey_id": bundle.prekey_id,
            "prekey_private": h(prekey_private),
            "prekey_public": h(bundle.prekey_public),
            "signed_prekey_id": 7,
            "signed_prekey_private": h(signed_private),
            "signed_prekey_public": h(signed.public),
            "signed_prekey_signature": h(signed.signature),
            "signed_prekey_timestamp": PREKEY_TIMESTAMP,
            "kyber_prekey_id": 9,
            "kyber_prekey_public": h(kyber_public),
            "kyber_prekey_secret": h(kyber_secret),
            "kyber_prekey_signature": h(kyber.signature),
            "kyber_prekey_timestamp": PREKEY_TIMESTAMP,
        },
        "privates": (identity, signed_private, prekey_private, kyber_secret),
    }


def _alice(ls: Libsignal, label: str) -> dict[str, Any]:
    identity = seed(f"{label}/alice/identity")
    alice = ls.create_participant(
        "alice", address=ALICE, identity_private=identity, registration_id=1111
    )
    return {
        "address": ALICE,
        "device_id": 1,
        "registration_id": alice.registration_id,
        "identity_private": h(identity),
        "identity_public": h(alice.identity_public),
    }


def record_session(ls: Libsignal, *, one_time: bool) -> list[dict[str, Any]]:
    """The 1:1 transcript; returns its Kyber case for the KEM file.

    With ``one_time`` false, Bob's bundle has no one-time EC prekey (PQXDH without DH4), as when
    the server has run out of them.
    """
    label = "session" if one_time else "session-signed-only"
    ls.reset()
    alice = _alice(ls, label)
    bob = _bob(ls, label, one_time=one_time)
    ls.process_bundle("alice", BOB, bob["bundle"])
    plaintexts = [
        b"",
        b"hello bob",
        "héllo 👋 — kurir".encode(),
        bytes(range(256)) * 4,
        b"x" * 5000,
        b"last before the reply",
    ]
    sent = [ls.encrypt("alice", BOB, p) for p in plaintexts]
    assert all(m.type == CiphertextType.PREKEY for m in sent)
    info = ls.session_info("alice", BOB)
    assert info.session is not None
    alice_chain_key = bytes.fromhex(_b64hex(info.session["receiver_chains"][0]["chain_key"]))
    first = ls.parse_prekey_message(sent[0].body)
    assert first.kyber_ciphertext is not None
    identity, signed_private, prekey_private, kyber_secret = bob["privates"]
    shared = _pqxdh_check(
        ls,
        bob_identity_private=identity,
        signed_prekey_private=signed_private,
        prekey_private=prekey_private,
        kyber_secret=kyber_secret,
        alice_identity=bytes.fromhex(alice["identity_public"]),
        base_key=first.base_key,
        kyber_ciphertext=first.kyber_ciphertext,
        alice_chain_key=alice_chain_key,
    )
    receive_order = [1, 0, 3, 2, 5, 4]
    for index in receive_order:
        assert ls.decrypt("bob", ALICE, sent[index]) == plaintexts[index]

    # The conversation after Bob answers: both sides' ratchet keys are libsignal's random ones.
    conversation: list[dict[str, Any]] = []

    def exchange(sender: str, receiver: str, peer_of_receiver: str, text: bytes) -> None:
        peer_of_sender = BOB if sender == "alice" else ALICE
        msg = ls.encrypt(sender, peer_of_sender, text)
        assert ls.decrypt(receiver, peer_of_receiver, msg) == text
        conversation.append(
            {
                "from": sender,
                "type": int(msg.type),
                "body": h(msg.body),
                "plaintext": h(text),
                "fields": _signal_fields(ls, msg),
            }
        )

    exchange("bob", "alice", BOB, b"reply 1 from bob")
    exchange("alice", "bob", ALICE, b"alice after the reply")
    exchange("alice", "bob", ALICE, b"alice again")
    exchange("bob", "alice", BOB, b"reply 2 from bob")
    exchange("bob", "alice", BOB, b"reply 3 from bob")
    exchange("alice", "bob", ALICE, b"alice, third ratchet step")

    write(
        label,
        {
            **header(
                "A PQXDH + Double Ratchet (+ SPQR) session from Alice (libsignal) to Bob "
                "(libsignal), with every private key of Bob's bundle"
                + ("" if one_time else ", which has no one-time EC prekey"),
                [
                    "Decrypt as Bob without Node: build Bob from bob.* (identity, one-time "
                    "prekey 31 if present, signed prekey 7, Kyber1024 prekey 9), then decrypt "
                    "prekey_messages in receive_order (out of order on purpose); each must give "
                    "its plaintext. All are PreKeySignalMessages (type 3): Alice has not heard "
                    "from Bob yet.",
                    "pqxdh gives the values to test the key agreement alone: the Kyber shared "
                    "secret (kyber-py decapsulation, proved right against libsignal) and "
                    "alice_first_receiving_chain_key = HKDF-SHA256(salt none, ikm = 0xff*32 || "
                    "DH(IKa,SPKb) || DH(EKa,IKb) || DH(EKa,SPKb) [|| DH(EKa,OPKb)] || SS, info = "
                    "label, 96 bytes)[32:64], read from Alice's session record.",
                    "conversation continues after Bob's first reply; its messages depend on "
                    "libsignal's random ratchet keys on both sides, so they serve parsers (header "
                    "fields, SPQR pq_ratchet layout, MAC) and are not decryptable from the keys "
                    "here.",
                    "Each message's version byte is 0x44 (version 4). SPQR is on: pq_ratchet is "
                    "non-empty.",
                ],
            ),
            "alice": alice,
            "bob": bob["keys"],
            "pqxdh": {
                "label": PQXDH_LABEL.decode(),
                "base_key": h(first.base_key),
                "kyber_ciphertext": h(first.kyber_ciphertext),
                "kyber_shared_secret": h(shared),
                "alice_first_receiving_chain_key": h(alice_chain_key),
            },
            "prekey_messages": [
                {
                    "index": i,
                    "type": int(m.type),
                    "body": h(m.body),
                    "plaintext": h(p),
                    "fields": _signal_fields(ls, m),
                }
                for i, (m, p) in enumerate(zip(sent, plaintexts, strict=True))
            ],
            "receive_order": receive_order,
            "conversation": conversation,
        },
    )
    return [
        {
            "public": bob["keys"]["kyber_prekey_public"],
            "secret": bob["keys"]["kyber_prekey_secret"],
            "ciphertext": h(first.kyber_ciphertext),
            "shared_secret": h(shared),
        }
    ]


def _b64hex(value: str) -> str:
    return base64.b64decode(value).hex()


def record_kyber(ls: Libsignal, from_session: list[dict[str, Any]]) -> None:
    cases = list(from_session)
    for i in range(4):
        ls.reset()
        _alice(ls, f"kyber/{i}")
        bob = _bob(ls, f"kyber/{i}", one_time=i % 2 == 0)
        ls.process_bundle("alice", BOB, bob["bundle"])
        msg = ls.encrypt("alice", BOB, b"k")
        pre = ls.parse_prekey_message(msg.body)
        assert pre.kyber_ciphertext is not None
        info = ls.session_info("alice", BOB)
        assert info.session is not None
        chain_key = bytes.fromhex(_b64hex(info.session["receiver_chains"][0]["chain_key"]))
        identity, signed_private, prekey_private, kyber_secret = bob["privates"]
        shared = _pqxdh_check(
            ls,
            bob_identity_private=identity,
            signed_prekey_private=signed_private,
            prekey_private=prekey_private,
            kyber_secret=kyber_secret,
            alice_identity=ls.public_key(seed(f"kyber/{i}/alice/identity")),
            base_key=pre.base_key,
            kyber_ciphertext=pre.kyber_ciphertext,
            alice_chain_key=chain_key,
        )
        assert ls.decrypt("bob", ALICE, msg) == b"k"
        cases.append(
            {
                "public": bob["keys"]["kyber_prekey_public"],
                "secret": bob["keys"]["kyber_prekey_secret"],
                "ciphertext": h(pre.kyber_ciphertext),
                "shared_secret": h(shared),
            }
        )
    write(
        "kyber1024",
        {
            **header(
                "Kyber1024 (round 3, libsignal key type 0x08) key pairs and encapsulations made "
                "by libsignal during PQXDH",
                [
                    "public (1,569 bytes), secret (3,169 bytes) and ciphertext (1,569 bytes) "
                    "carry libsignal's 0x08 type byte first; strip it for a raw Kyber1024 API.",
                    "0.90.0 exposes no KEM encapsulate/decapsulate to JavaScript: keys come "
                    "from KEMKeyPair.generate, ciphertexts from the kyber_ciphertext field of "
                    "real PreKeySignalMessages (Alice's encapsulation inside PQXDH).",
                    "shared_secret is kyber-py 1.2.0's decapsulation, proved right against "
                    "libsignal: with it, HKDF over the PQXDH input reproduces the chain key "
                    "libsignal stored in Alice's session (see libsignal-session.json pqxdh). "
                    "The first two cases are the sessions' own.",
                ],
            ),
            "cases": cases,
        },
    )


# --- groups and sealed sender -----------------------------------------------------------------


def record_sender_keys(ls: Libsignal) -> None:
    ls.reset()
    alice = ls.create_participant("alice", address=ALICE, identity_private=seed("sk/alice"))
    ls.create_participant("bob", address=BOB)
    ls.create_participant("carol", address="3a3a3a3a-3a3a-4a3a-8a3a-3a3a3a3a3a3a")
    distribution_id = "0b0b0b0b-1c1c-4d4d-8e8e-2f2f2f2f2f2f"
    skdm = ls.sender_key_distribution("alice", distribution_id)
    dist = ls.parse_sender_key_distribution(skdm)
    ls.process_sender_key_distribution("bob", ALICE, skdm)
    plaintexts = [f"group message {i}".encode() for i in range(5)]
    bodies = [ls.group_encrypt("alice", distribution_id, p) for p in plaintexts]
    late = ls.sender_key_distribution("alice", distribution_id)
    late_dist = ls.parse_sender_key_distribution(late)
    ls.process_sender_key_distribution("carol", ALICE, late)
    later_plain = [b"after the late distribution", b"and one more"]
    later = [ls.group_encrypt("alice", distribution_id, p) for p in later_plain]
    all_plain = plaintexts + later_plain
    all_bodies = bodies + later
    receive_order = [1, 0, 3, 2, 4, 6, 5]
    for i in receive_order:
        assert ls.group_decrypt("bob", ALICE, all_bodies[i]) == all_plain[i]
    for i in (5, 6):
        assert ls.group_decrypt("carol", ALICE, all_bodies[i]) == all_plain[i]
    try:
        ls.group_decrypt("carol", ALICE, all_bodies[0])
        old_error = None
    except LibsignalError as err:
        old_error = f"{err.code}: {err.message}"
    messages = []
    for i, (body, plain) in enumerate(zip(all_bodies, all_plain, strict=True)):
        parsed = ls.parse_sender_key_message(body, signing_key=dist.signing_key)
        assert parsed.signature_valid
        messages.append(
            {
                "index": i,
                "body": h(body),
                "plaintext": h(plain),
                "iteration": parsed.iteration,
                "chain_id": parsed.chain_id,
            }
        )
    write(
        "sender-keys",
        {
            **header(
                "Sender Keys: a SenderKeyDistributionMessage and the group messages "
                "(SenderKeyMessage, type 7) that follow, by libsignal",
                [
                    "A receiver that processes distribution decrypts messages in receive_order "
                    "(out of order on purpose).",
                    "late_distribution was created after message 4 (iteration 5): a receiver "
                    "that processes only it decrypts messages 5 and 6, and message 0 fails "
                    "with late_receiver_old_message_error.",
                    "The chain key, signing key and chain id are random on every run.",
                ],
            ),
            "sender": {
                "address": ALICE,
                "device_id": 1,
                "identity_public": h(alice.identity_public),
            },
            "distribution_id": distribution_id,
            "distribution": {
                "message": h(skdm),
                "chain_id": dist.chain_id,
                "iteration": dist.iteration,
                "chain_key": h(dist.chain_key),
                "signing_key": h(dist.signing_key),
            },
            "late_distribution": {
                "message": h(late),
                "chain_id": late_dist.chain_id,
                "iteration": late_dist.iteration,
                "chain_key": h(late_dist.chain_key),
                "signing_key": h(late_dist.signing_key),
            },
            "messages": messages,
            "receive_order": receive_order,
            "late_receiver_old_message_error": old_error,
        },
    )


def record_sealed_sender(ls: Libsignal) -> None:
    ls.reset()
    alice = _alice(ls, "sealed")
    bob = _bob(ls, "sealed")
    trust_private = seed("sealed/trust-root")
    trust_public = ls.public_key(trust_private)
    server_private = seed("sealed/server")
    server_public = ls.public_key(server_private)
    server_cert = ls.server_certificate(1, server_public, trust_private)
    sender_cert = ls.sender_certificate(
        name="alice",
        sender_e164="+14152222222",
        expiration=CERT_EXPIRATION,
        server_certificate=server_cert,
        server_private=server_private,
    )
    assert ls.parse_sender_certificate(sender_cert, trust_root=trust_public, time=0).valid
    ls.process_bundle("alice", BOB, bob["bundle"])
    messages: list[dict[str, Any]] = []
    for text in (b"sealed hello", b"sealed again"):
        sealed = ls.sealed_encrypt("alice", BOB, text, sender_cert)
        usmc = ls.sealed_decrypt_usmc("bob", sealed)
        result = ls.sealed_decrypt("bob", sealed, trust_public, timestamp=VALIDATION_TIME)
        assert result.plaintext == text
        messages.append(
            {
                "kind": "1:1 via sealedSenderEncryptMessage",
                "sealed": h(sealed),
                "usmc": h(usmc.serialized),
                "msg_type": usmc.msg_type,
                "contents": h(usmc.contents),
                "content_hint": usmc.content_hint,
                "group_id": h(usmc.group_id),
                "plaintext": h(text),
            }
        )
    distribution_id = "0b0b0b0b-1c1c-4d4d-8e8e-2f2f2f2f2f2f"
    skdm = ls.sender_key_distribution("alice", distribution_id)
    ls.process_sender_key_distribution("bob", ALICE, skdm)
    text = b"sealed group message"
    group_body = ls.group_encrypt("alice", distribution_id, text)
    content = ls.usmc_new(
        CiphertextType.SENDER_KEY, group_body, sender_cert, content_hint=1, group_id=b"kurir-group"
    )
    sealed = ls.sealed_encrypt_usmc("alice", BOB, content)
    usmc = ls.sealed_decrypt_usmc("bob", sealed)
    assert usmc.serialized == content
    assert ls.group_decrypt("bob", ALICE, usmc.contents) == text
    messages.append(
        {
            "kind": "group via sealedSenderEncrypt(UnidentifiedSenderMessageContent)",
            "sealed": h(sealed),
            "usmc": h(usmc.serialized),
            "msg_type": usmc.msg_type,
            "contents": h(usmc.contents),
            "content_hint": usmc.content_hint,
            "group_id": h(usmc.group_id),
            "plaintext": h(text),
        }
    )
    # Sealed sender v2: one SentMessage for Bob and Carol; the server cuts Bob's ReceivedMessage.
    carol = "3a3a3a3a-3a3a-4a3a-8a3a-3a3a3a3a3a3a"
    ls.create_participant("carol", address=carol)
    ls.process_bundle("alice", carol, ls.generate_prekeys("carol").bundle)
    ls.process_sender_key_distribution("carol", ALICE, skdm)
    text = b"sealed sender v2 group message"
    group_body = ls.group_encrypt("alice", distribution_id, text)
    content = ls.usmc_new(
        CiphertextType.SENDER_KEY, group_body, sender_cert, content_hint=2, group_id=b"kurir-group"
    )
    sent = ls.sealed_encrypt_multi("alice", [(BOB, 1), (carol, 1)], content)
    recipients, _ = ls.sealed_multi_parse(sent)
    assert set(recipients) == {BOB, carol}
    received = ls.sealed_multi_for_recipient(sent, BOB)
    usmc = ls.sealed_decrypt_usmc("bob", received)
    assert usmc.serialized == content
    assert ls.group_decrypt("bob", ALICE, usmc.contents) == text
    carol_usmc = ls.sealed_decrypt_usmc("carol", ls.sealed_multi_for_recipient(sent, carol))
    assert ls.group_decrypt("carol", ALICE, carol_usmc.contents) == text
    messages.append(
        {
            "kind": "group via sealedSenderMultiRecipientEncrypt (v2), to Bob and Carol",
            "sealed": h(received),
            "v2_sent_message": h(sent),
            "v2_recipients": {k: v for k, v in sorted(recipients.items())},
            "usmc": h(usmc.serialized),
            "msg_type": usmc.msg_type,
            "contents": h(usmc.contents),
            "content_hint": usmc.content_hint,
            "group_id": h(usmc.group_id),
            "plaintext": h(text),
        }
    )
    write(
        "sealed-sender",
        {
            **header(
                "Sealed sender (v1 and v2) messages from Alice to Bob by libsignal, with the "
                "trust chain and every private key Bob needs",
                [
                    "Unseal with bob.identity_private: the result must equal usmc "
                    "(UnidentifiedSenderMessageContent, serialized). Validate its sender "
                    "certificate against trust_root_public at validation_time (ms).",
                    "msg_type is libsignal's CiphertextMessageType (3 PreKey, 2 Whisper, 7 "
                    "SenderKey); the USMC protobuf writes PreKey as 1.",
                    "The 1:1 inner messages are PreKeySignalMessages to Bob's bundle (keys in "
                    "bob, as in libsignal-session.json); the group message's sender key comes "
                    "from sender_key_distribution.",
                    "The last message is sealed sender v2: v2_sent_message is what Alice sends "
                    "the server (for Bob and Carol), sealed is the ReceivedMessage the server "
                    "cuts out of it for Bob (SealedSenderMultiRecipientMessage."
                    "messageForRecipient).",
                    "Sealed-sender ephemeral keys are random: bytes change on every run.",
                ],
            ),
            "trust_root_private": h(trust_private),
            "trust_root_public": h(trust_public),
            "server_key_id": 1,
            "server_private": h(server_private),
            "server_public": h(server_public),
            "server_certificate": h(server_cert),
            "sender_certificate": h(sender_cert),
            "sender": {**alice, "e164": "+14152222222"},
            "certificate_expiration": CERT_EXPIRATION,
            "validation_time": VALIDATION_TIME,
            "bob": bob["keys"],
            "sender_key_distribution": h(skdm),
            "distribution_id": distribution_id,
            "messages": messages,
        },
    )


def main() -> None:
    with Libsignal() as ls:
        record_xeddsa(ls)
        record_x25519(ls)
        record_fingerprints(ls)
        kyber_cases = record_session(ls, one_time=True)
        kyber_cases += record_session(ls, one_time=False)
        record_kyber(ls, kyber_cases)
        record_sender_keys(ls)
        record_sealed_sender(ls)


if __name__ == "__main__":
    main()
