"""Tests of the libsignal interop harness itself (harness.mjs driven through libsignal.py).

Each test runs libsignal against libsignal, or against an independent implementation (pyca
``cryptography``, RFC test vectors), so that a broken harness op cannot pass unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from libsignal import (
    LIBRARY_VERSION,
    Ciphertext,
    CiphertextType,
    HarnessFailure,
    Libsignal,
    LibsignalError,
    Participant,
    PreKeyBundle,
    unavailable_reason,
)

ALICE = "9d0652a3-dcc3-4d11-975f-74d61598733f"
BOB = "796abedb-ca4e-4f18-8803-1fde5b921f9f"


def _pair(ls: Libsignal) -> tuple[Participant, Participant, PreKeyBundle]:
    alice = ls.create_participant("alice", address=ALICE)
    bob = ls.create_participant("bob", address=BOB)
    bundle = ls.generate_prekeys("bob").bundle
    ls.process_bundle("alice", BOB, bundle)
    return alice, bob, bundle


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


# --- protocol of the harness ------------------------------------------------------------------


def test_reports_pinned_version(libsignal: Libsignal) -> None:
    assert libsignal.version == LIBRARY_VERSION
    assert libsignal.call("ping")["version"] == LIBRARY_VERSION


def test_unknown_op_and_bad_request_are_errors_and_harness_survives(libsignal: Libsignal) -> None:
    with pytest.raises(LibsignalError) as unknown:
        libsignal.call("no_such_op")
    assert unknown.value.code == "UnknownOp"
    with pytest.raises(LibsignalError) as bad:
        libsignal.call("sign", message="aGk=")
    assert bad.value.code == "BadRequest"
    assert "private" in bad.value.message
    with pytest.raises(LibsignalError) as missing:
        libsignal.encrypt("nobody", BOB, b"x")
    assert missing.value.code == "UnknownParticipant"
    assert libsignal.call("ping")["ok"] is True


def test_separate_process_closes_cleanly_and_refuses_calls_after(
    libsignal_process: Libsignal,
) -> None:
    harness = Libsignal()  # a second process; libsignal_process only ensures node is there
    with harness:
        assert harness.private_generate()[1][0] == 0x05
    with pytest.raises(HarnessFailure):
        harness.call("ping")


def test_unavailable_reason_names_missing_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert unavailable_reason() == "node (Node.js) is not on PATH"
    with pytest.raises(HarnessFailure):
        Libsignal()


def test_reset_forgets_participants(libsignal: Libsignal) -> None:
    carol = libsignal.create_participant("carol")
    described = libsignal.call("describe_participant", name="carol")
    assert described["identity_public"] == base64.b64encode(carol.identity_public).decode()
    libsignal.call("remove_participant", name="carol")
    with pytest.raises(LibsignalError) as gone:
        libsignal.call("describe_participant", name="carol")
    assert gone.value.code == "UnknownParticipant"
    libsignal.create_participant("carol")
    with pytest.raises(LibsignalError) as dup:
        libsignal.create_participant("carol")
    assert dup.value.code == "BadRequest"
    libsignal.reset()
    libsignal.create_participant("carol")


# --- participants and prekeys -----------------------------------------------------------------


def test_participant_from_given_identity_is_deterministic(libsignal: Libsignal) -> None:
    private = _seed("identity")
    first = libsignal.create_participant("p1", identity_private=private, registration_id=77)
    second = libsignal.create_participant("p2", identity_private=private)
    assert first.identity_public == second.identity_public == libsignal.public_key(private)
    assert len(first.identity_public) == 33
    assert first.identity_public[0] == 0x05
    assert first.registration_id == 77
    assert first.address == "p1"


def test_generated_prekeys_are_kyber1024_and_signed_by_identity(libsignal: Libsignal) -> None:
    bob = libsignal.create_participant("bob", address=BOB)
    keys = libsignal.generate_prekeys("bob")
    b = keys.bundle
    assert len(b.kyber_prekey_public) == 1569
    assert b.kyber_prekey_public[0] == 0x08
    assert keys.kyber_prekey_secret[0] == 0x08
    assert len(keys.kyber_prekey_secret) == 3169
    assert b.prekey_public is not None
    assert keys.prekey_private is not None
    assert libsignal.public_key(keys.prekey_private) == b.prekey_public
    assert libsignal.public_key(keys.signed_prekey_private) == b.signed_prekey_public
    assert libsignal.verify(bob.identity_public, b.signed_prekey_public, b.signed_prekey_signature)
    assert libsignal.verify(bob.identity_public, b.kyber_prekey_public, b.kyber_prekey_signature)
    again = libsignal.generate_prekeys("bob", one_time=False).bundle
    assert again.prekey_id is None
    assert again.signed_prekey_id == b.signed_prekey_id + 1


def test_ml_kem_1024_keys_are_refused_by_0_90_0(libsignal: Libsignal) -> None:
    """Measures: 0.90.0's Node build lacks the ``mlkem1024`` feature, so type 0x0A is unknown."""
    ml = mlkem.MLKEM1024PrivateKey.generate()
    public = b"\x0a" + ml.public_key().public_bytes_raw()
    checked = libsignal.kem_check(public=public)
    assert checked["public"]["ok"] is False
    assert checked["public"]["message"] == "bad KEM key type <0x0a>"
    kyber_public, _ = libsignal.kem_generate()
    assert libsignal.kem_check(public=kyber_public)["public"]["ok"] is True

    bob = libsignal.create_participant("bob", address=BOB)
    libsignal.create_participant("alice", address=ALICE)
    b = libsignal.generate_prekeys("bob").bundle
    ml_bundle = PreKeyBundle(
        registration_id=b.registration_id,
        device_id=b.device_id,
        identity_key=b.identity_key,
        prekey_id=b.prekey_id,
        prekey_public=b.prekey_public,
        signed_prekey_id=b.signed_prekey_id,
        signed_prekey_public=b.signed_prekey_public,
        signed_prekey_signature=b.signed_prekey_signature,
        kyber_prekey_id=b.kyber_prekey_id,
        kyber_prekey_public=public,
        kyber_prekey_signature=libsignal.sign(bob.identity_private, public),
    )
    with pytest.raises(LibsignalError):
        libsignal.process_bundle("alice", BOB, ml_bundle)
    assert not libsignal.session_info("alice", BOB).has_session


def test_kem_encapsulation_is_not_exposed(libsignal: Libsignal) -> None:
    for op in ("kem_encapsulate", "kem_decapsulate"):
        with pytest.raises(LibsignalError) as err:
            libsignal.call(op)
        assert err.value.code == "NotSupported"


# --- 1:1 sessions -----------------------------------------------------------------------------


def test_session_both_ways_with_out_of_order_and_duplicates(libsignal: Libsignal) -> None:
    alice, bob, bundle = _pair(libsignal)
    info = libsignal.session_info("alice", BOB)
    assert info.has_session
    assert info.version == 4
    assert info.session is not None
    assert info.session["pending_kyber_pre_key"]["pre_key_id"] == bundle.kyber_prekey_id

    first = libsignal.encrypt("alice", BOB, b"first")
    second = libsignal.encrypt("alice", BOB, b"second")
    assert first.type == second.type == CiphertextType.PREKEY
    # Out of order: the second PreKey message first.
    assert libsignal.decrypt("bob", ALICE, second) == b"second"
    assert libsignal.decrypt("bob", ALICE, first) == b"first"
    with pytest.raises(LibsignalError) as dup:
        libsignal.decrypt("bob", ALICE, first)
    assert dup.value.code == "DuplicatedMessage"
    assert not libsignal.has_prekey("bob", bundle.prekey_id or 0)
    assert libsignal.kyber_prekeys_used("bob")[0]["id"] == bundle.kyber_prekey_id
    assert libsignal.saved_identity("bob", ALICE) == alice.identity_public

    reply = libsignal.encrypt("bob", ALICE, b"reply")
    assert reply.type == CiphertextType.WHISPER
    assert libsignal.decrypt("alice", BOB, reply) == b"reply"
    for i in range(3):
        msg = libsignal.encrypt("alice", BOB, f"m{i}".encode())
        assert msg.type == CiphertextType.WHISPER
        assert libsignal.decrypt("bob", ALICE, msg) == f"m{i}".encode()
    assert libsignal.session_info("bob", ALICE).version == 4
    assert bob.address == BOB


def test_spqr_pq_ratchet_layout(libsignal: Libsignal) -> None:
    """Measures 0.90.0's SPQR messages: 01, epoch, index, type (+ chunk index, 32 bytes)."""
    _pair(libsignal)
    first = libsignal.encrypt("alice", BOB, b"1")
    libsignal.decrypt("bob", ALICE, first)
    hdr = libsignal.parse_prekey_message(first.body).signal_message.pq_ratchet
    assert hdr[:5] == bytes([0x01, 0x01, 0x00, 0x01, 0x00])  # epoch 1, index 0, Hdr, chunk 0
    reply = libsignal.encrypt("bob", ALICE, b"2")
    libsignal.decrypt("alice", BOB, reply)
    # The responder has one header chunk only: it sends None (type 0), 4 bytes.
    assert libsignal.parse_signal_message(reply.body).pq_ratchet == bytes([1, 1, 1, 0])


def test_tampered_message_fails_and_changes_nothing(libsignal: Libsignal) -> None:
    _pair(libsignal)
    msg = libsignal.encrypt("alice", BOB, b"hello")
    body = bytearray(msg.body)
    body[-1] ^= 1
    with pytest.raises(LibsignalError) as err:
        libsignal.decrypt("bob", ALICE, Ciphertext(msg.type, bytes(body)))
    assert (err.value.code, err.value.message) == (
        "Generic",
        "invalid PreKey message: decryption failed",
    )
    assert libsignal.decrypt("bob", ALICE, msg) == b"hello"


def test_prekey_message_carries_kyber_id_ciphertext_and_pq_ratchet(libsignal: Libsignal) -> None:
    alice, _, bundle = _pair(libsignal)
    msg = libsignal.encrypt("alice", BOB, b"hi")
    info = libsignal.parse_prekey_message(msg.body)
    assert info.message_version == 4
    assert info.version_byte == 0x44
    assert info.kyber_pre_key_id == bundle.kyber_prekey_id
    assert info.kyber_ciphertext is not None
    assert len(info.kyber_ciphertext) == 1569
    assert info.kyber_ciphertext[0] == 0x08
    assert info.pre_key_id == bundle.prekey_id
    assert info.signed_pre_key_id == bundle.signed_prekey_id
    assert info.identity_key == alice.identity_public
    assert info.registration_id == alice.registration_id
    inner = info.signal_message
    assert inner.counter == 0
    assert len(inner.mac) == 8
    # The SPQR message: version 1, epoch 1, index 0, then a chunk (37 bytes in all).
    assert inner.pq_ratchet[0] == 0x01
    assert len(inner.pq_ratchet) == 37
    assert libsignal.parse_signal_message(info.message) == inner


def test_parse_garbage_raises_libsignal_error(libsignal: Libsignal) -> None:
    with pytest.raises(LibsignalError):
        libsignal.parse_signal_message(b"\x44garbage-garbage")
    with pytest.raises(LibsignalError):
        libsignal.parse_prekey_message(b"\x33")


def test_session_with_externally_given_keys(libsignal: Libsignal) -> None:
    """Bob's bundle built in Python from fixed private keys, as kurir vectors will be."""
    bob = libsignal.create_participant("bob", address=BOB, identity_private=_seed("bob"))
    libsignal.create_participant("alice", address=ALICE)
    prekey = libsignal.add_prekey("bob", 31, _seed("bob-prekey"))
    signed = libsignal.add_signed_prekey("bob", 7, _seed("bob-signed"))
    kem_public, kem_secret = libsignal.kem_generate()
    kyber = libsignal.add_kyber_prekey("bob", 9, kem_public, kem_secret)
    assert kyber.public == kem_public
    assert signed.signature is not None
    assert kyber.signature is not None
    bundle = PreKeyBundle(
        registration_id=bob.registration_id,
        device_id=1,
        identity_key=bob.identity_public,
        prekey_id=31,
        prekey_public=prekey.public,
        signed_prekey_id=7,
        signed_prekey_public=signed.public,
        signed_prekey_signature=signed.signature,
        kyber_prekey_id=9,
        kyber_prekey_public=kyber.public,
        kyber_prekey_signature=kyber.signature,
    )
    libsignal.process_bundle("alice", BOB, bundle)
    msg = libsignal.encrypt("alice", BOB, b"to fixed keys")
    assert libsignal.decrypt("bob", ALICE, msg) == b"to fixed keys"


def test_bad_bundle_signature_is_refused(libsignal: Libsignal) -> None:
    libsignal.create_participant("bob", address=BOB)
    libsignal.create_participant("alice", address=ALICE)
    b = libsignal.generate_prekeys("bob").bundle
    forged = bytearray(b.signed_prekey_signature)
    forged[0] ^= 1
    bad = PreKeyBundle(
        registration_id=b.registration_id,
        device_id=b.device_id,
        identity_key=b.identity_key,
        signed_prekey_id=b.signed_prekey_id,
        signed_prekey_public=b.signed_prekey_public,
        signed_prekey_signature=bytes(forged),
        kyber_prekey_id=b.kyber_prekey_id,
        kyber_prekey_public=b.kyber_prekey_public,
        kyber_prekey_signature=b.kyber_prekey_signature,
    )
    with pytest.raises(LibsignalError):
        libsignal.process_bundle("alice", BOB, bad)


# --- primitives -------------------------------------------------------------------------------


def test_xeddsa_sign_verify_and_tamper(libsignal: Libsignal) -> None:
    private, public = libsignal.private_generate()
    sig = libsignal.sign(private, b"message")
    assert len(sig) == 64
    assert libsignal.verify(public, b"message", sig)
    assert not libsignal.verify(public, b"messagf", sig)
    assert libsignal.sign(private, b"message") != sig  # randomized


def test_agree_matches_pyca_x25519(libsignal: Libsignal) -> None:
    a = X25519PrivateKey.from_private_bytes(_seed("a"))
    b_private, b_public = libsignal.private_generate()
    ours = a.exchange(X25519PublicKey.from_public_bytes(b_public[1:]))
    a_public = libsignal.public_key(_seed("a"))
    assert a_public[1:] == a.public_key().public_bytes_raw()
    assert libsignal.agree(b_private, a_public) == ours
    assert libsignal.public_key_bytes(a_public) == a_public[1:]


def test_hkdf_matches_rfc5869_case_1(libsignal: Libsignal) -> None:
    okm = libsignal.hkdf(
        42,
        bytes([0x0B] * 22),
        info=bytes(range(0xF0, 0xFA)),
        salt=bytes(range(0x0D)),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_fingerprint_is_symmetric(libsignal: Libsignal) -> None:
    _, a_pub = libsignal.private_generate()
    _, b_pub = libsignal.private_generate()
    a_id, b_id = bytes(range(16)), bytes(range(16, 32))
    mine = libsignal.fingerprint(a_id, a_pub, b_id, b_pub)
    theirs = libsignal.fingerprint(b_id, b_pub, a_id, a_pub)
    assert mine.display == theirs.display
    assert len(mine.display) == 60
    assert mine.display.isdigit()
    assert libsignal.fingerprint_compare(mine.scannable, theirs.scannable)
    other = libsignal.fingerprint(a_id, a_pub, b_id, a_pub)
    assert not libsignal.fingerprint_compare(mine.scannable, other.scannable)


# --- sender keys ------------------------------------------------------------------------------


def test_sender_keys_round_trip(libsignal: Libsignal) -> None:
    alice = libsignal.create_participant("alice", address=ALICE)
    libsignal.create_participant("bob", address=BOB)
    dist_id = "d1d1d1d1-0000-4000-8000-000000000001"
    skdm = libsignal.sender_key_distribution("alice", dist_id)
    dist = libsignal.parse_sender_key_distribution(skdm)
    assert dist.distribution_id == dist_id
    assert dist.iteration == 0
    assert len(dist.chain_key) == 32
    libsignal.process_sender_key_distribution("bob", alice.address, skdm)
    bodies = [libsignal.group_encrypt("alice", dist_id, f"g{i}".encode()) for i in range(3)]
    parsed = libsignal.parse_sender_key_message(bodies[2], signing_key=dist.signing_key)
    assert parsed.iteration == 2
    assert parsed.signature_valid is True
    assert parsed.chain_id == dist.chain_id
    assert libsignal.group_decrypt("bob", alice.address, bodies[2]) == b"g2"
    assert libsignal.group_decrypt("bob", alice.address, bodies[0]) == b"g0"
    with pytest.raises(LibsignalError) as dup:
        libsignal.group_decrypt("bob", alice.address, bodies[0])
    assert dup.value.code == "DuplicatedMessage"


def test_group_decrypt_without_distribution_fails(libsignal: Libsignal) -> None:
    libsignal.create_participant("alice", address=ALICE)
    libsignal.create_participant("bob", address=BOB)
    dist_id = "d1d1d1d1-0000-4000-8000-000000000002"
    libsignal.sender_key_distribution("alice", dist_id)
    body = libsignal.group_encrypt("alice", dist_id, b"x")
    with pytest.raises(LibsignalError) as err:
        libsignal.group_decrypt("bob", ALICE, body)
    # 0.90.0 reports a missing sender key state as Generic, not InvalidSenderKeySession.
    assert err.value.code == "Generic"
    assert "missing sender key state" in err.value.message


# --- sealed sender ----------------------------------------------------------------------------


def _trust(ls: Libsignal) -> tuple[bytes, bytes, bytes, bytes]:
    root_private, root_public = ls.private_generate()
    server_private, server_public = ls.private_generate()
    server_cert = ls.server_certificate(1, server_public, root_private)
    return root_public, server_cert, server_private, root_private


def test_sealed_sender_round_trip_and_usmc(libsignal: Libsignal) -> None:
    alice, _, _ = _pair(libsignal)
    root_public, server_cert, server_private, _ = _trust(libsignal)
    cert = libsignal.sender_certificate(
        name="alice",
        server_certificate=server_cert,
        server_private=server_private,
        expiration=2_000_000_000_000,
    )
    info = libsignal.parse_sender_certificate(cert, trust_root=root_public, time=1_000)
    assert info.valid is True
    assert info.sender_uuid == ALICE
    assert info.sender_key == alice.identity_public
    assert (
        libsignal.parse_sender_certificate(cert, trust_root=root_public, time=3 * 10**12).valid
        is False
    )

    sealed = libsignal.sealed_encrypt("alice", BOB, b"sealed hello", cert)
    usmc = libsignal.sealed_decrypt_usmc("bob", sealed)
    assert usmc.msg_type == 3  # PreKey, as CiphertextMessageType
    assert usmc.sender.sender_uuid == ALICE
    result = libsignal.sealed_decrypt("bob", sealed, root_public, timestamp=1_000)
    assert result.plaintext == b"sealed hello"
    assert result.sender_uuid == ALICE
    assert result.sender_device_id == 1

    # sealedSenderEncrypt with a USMC built from parts (here a group message).
    dist_id = "d1d1d1d1-0000-4000-8000-000000000003"
    skdm = libsignal.sender_key_distribution("alice", dist_id)
    libsignal.process_sender_key_distribution("bob", ALICE, skdm)
    group_body = libsignal.group_encrypt("alice", dist_id, b"to the group")
    content = libsignal.usmc_new(
        CiphertextType.SENDER_KEY, group_body, cert, content_hint=1, group_id=b"group-1"
    )
    sealed_group = libsignal.sealed_encrypt_usmc("alice", BOB, content)
    opened = libsignal.sealed_decrypt_usmc("bob", sealed_group)
    assert opened.msg_type == CiphertextType.SENDER_KEY
    assert opened.group_id == b"group-1"
    assert opened.content_hint == 1
    assert libsignal.parse_usmc(content).contents == group_body
    assert libsignal.group_decrypt("bob", ALICE, opened.contents) == b"to the group"


def test_sealed_sender_with_wrong_trust_root_fails(libsignal: Libsignal) -> None:
    _pair(libsignal)
    _, server_cert, server_private, _ = _trust(libsignal)
    cert = libsignal.sender_certificate(
        name="alice",
        server_certificate=server_cert,
        server_private=server_private,
        expiration=2_000_000_000_000,
    )
    sealed = libsignal.sealed_encrypt("alice", BOB, b"x", cert)
    _, other_root = libsignal.private_generate()
    with pytest.raises(LibsignalError):
        libsignal.sealed_decrypt("bob", sealed, other_root, timestamp=1_000)


# --- recorded vectors replay through libsignal ------------------------------------------------

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load(name: str) -> dict[str, Any]:
    data = json.loads((VECTORS / f"libsignal-{name}.json").read_text())
    assert isinstance(data, dict)
    assert data["library"] == f"@signalapp/libsignal-client {LIBRARY_VERSION}"
    assert "record.py" in data["regenerate"]
    return data


def _x(value: str | None) -> bytes:
    assert value is not None
    return bytes.fromhex(value)


def _bob_from_vector(ls: Libsignal, bob: dict[str, Any]) -> None:
    ls.create_participant(
        "bob",
        address=bob["address"],
        identity_private=_x(bob["identity_private"]),
        registration_id=bob["registration_id"],
    )
    if bob["prekey_private"] is not None:
        ls.add_prekey("bob", bob["prekey_id"], _x(bob["prekey_private"]))
    ls.add_signed_prekey(
        "bob",
        bob["signed_prekey_id"],
        _x(bob["signed_prekey_private"]),
        signature=_x(bob["signed_prekey_signature"]),
        timestamp=bob["signed_prekey_timestamp"],
    )
    ls.add_kyber_prekey(
        "bob",
        bob["kyber_prekey_id"],
        _x(bob["kyber_prekey_public"]),
        _x(bob["kyber_prekey_secret"]),
        signature=_x(bob["kyber_prekey_signature"]),
        timestamp=bob["kyber_prekey_timestamp"],
    )


def test_vectors_xeddsa_x25519_fingerprint_replay(libsignal: Libsignal) -> None:
    xeddsa = _load("xeddsa")["cases"]
    assert any(not c["valid"] for c in xeddsa)
    for c in xeddsa:
        if c["private"] is not None:
            assert libsignal.public_key(_x(c["private"])) == _x(c["public"])
        ok = libsignal.verify(_x(c["public"]), _x(c["message"]), _x(c["signature"]))
        assert ok is c["valid"], c["tamper"]
    for c in _load("x25519")["cases"]:
        assert libsignal.public_key(_x(c["private_a"])) == _x(c["public_a"])
        if c["error"] is None:
            assert libsignal.agree(_x(c["private_a"]), _x(c["public_b"])) == _x(c["shared"])
        else:
            with pytest.raises(LibsignalError):
                libsignal.agree(_x(c["private_a"]), _x(c["public_b"]))
    for c in _load("fingerprint")["cases"]:
        fp = libsignal.fingerprint(
            _x(c["local_id"]),
            _x(c["local_key"]),
            _x(c["remote_id"]),
            _x(c["remote_key"]),
            iterations=c["iterations"],
            version=c["version"],
        )
        assert fp.display == c["display"]
        assert fp.scannable == _x(c["scannable"])


@pytest.mark.parametrize("name", ["session", "session-signed-only"])
def test_vector_session_replays_as_bob(libsignal: Libsignal, name: str) -> None:
    data = _load(name)
    _bob_from_vector(libsignal, data["bob"])
    messages = data["prekey_messages"]
    for index in data["receive_order"]:
        m = messages[index]
        msg = Ciphertext(CiphertextType(m["type"]), _x(m["body"]))
        assert libsignal.decrypt("bob", data["alice"]["address"], msg) == _x(m["plaintext"])
    pqxdh = data["pqxdh"]
    bob = data["bob"]
    base_key = _x(pqxdh["base_key"])
    ikm = b"\xff" * 32
    ikm += libsignal.agree(_x(bob["signed_prekey_private"]), _x(data["alice"]["identity_public"]))
    ikm += libsignal.agree(_x(bob["identity_private"]), base_key)
    ikm += libsignal.agree(_x(bob["signed_prekey_private"]), base_key)
    if bob["prekey_private"] is not None:
        ikm += libsignal.agree(_x(bob["prekey_private"]), base_key)
    else:
        assert all(m["fields"]["pre_key_id"] is None for m in messages)
    ikm += _x(pqxdh["kyber_shared_secret"])
    okm = libsignal.hkdf(96, ikm, pqxdh["label"].encode())
    assert okm[32:64] == _x(pqxdh["alice_first_receiving_chain_key"])
    kyber = _load("kyber1024")["cases"]
    assert pqxdh["kyber_ciphertext"] in {c["ciphertext"] for c in kyber}
    assert all(libsignal.kem_check(public=_x(c["public"]))["public"]["ok"] for c in kyber)


def test_vector_sender_keys_replay(libsignal: Libsignal) -> None:
    data = _load("sender-keys")
    sender = data["sender"]["address"]
    libsignal.create_participant("bob")
    libsignal.create_participant("carol")
    libsignal.process_sender_key_distribution("bob", sender, _x(data["distribution"]["message"]))
    messages = data["messages"]
    for index in data["receive_order"]:
        body = _x(messages[index]["body"])
        assert libsignal.group_decrypt("bob", sender, body) == _x(messages[index]["plaintext"])
    late = _x(data["late_distribution"]["message"])
    libsignal.process_sender_key_distribution("carol", sender, late)
    for m in messages[data["late_distribution"]["iteration"] :]:
        assert libsignal.group_decrypt("carol", sender, _x(m["body"])) == _x(m["plaintext"])
    with pytest.raises(LibsignalError):
        libsignal.group_decrypt("carol", sender, _x(messages[0]["body"]))


def test_vector_sealed_sender_replays_as_bob(libsignal: Libsignal) -> None:
    data = _load("sealed-sender")
    _bob_from_vector(libsignal, data["bob"])
    sender = data["sender"]["address"]
    trust_root = _x(data["trust_root_public"])
    libsignal.process_sender_key_distribution("bob", sender, _x(data["sender_key_distribution"]))
    assert any("v2_sent_message" in m for m in data["messages"])
    for m in data["messages"]:
        if "v2_sent_message" in m:
            cut = libsignal.sealed_multi_for_recipient(
                _x(m["v2_sent_message"]), data["bob"]["address"]
            )
            assert cut == _x(m["sealed"])
        usmc = libsignal.sealed_decrypt_usmc("bob", _x(m["sealed"]))
        assert usmc.serialized == _x(m["usmc"])
        assert usmc.sender_certificate == _x(data["sender_certificate"])
        if m["msg_type"] == CiphertextType.SENDER_KEY:
            assert libsignal.group_decrypt("bob", sender, usmc.contents) == _x(m["plaintext"])
        else:
            result = libsignal.sealed_decrypt(
                "bob", _x(m["sealed"]), trust_root, timestamp=data["validation_time"]
            )
            assert result.plaintext == _x(m["plaintext"])
            assert result.sender_e164 == data["sender"]["e164"]


def test_sealed_sender_v2_fan_out(libsignal: Libsignal) -> None:
    carol = "3a3a3a3a-3a3a-4a3a-8a3a-3a3a3a3a3a3a"
    _pair(libsignal)
    libsignal.create_participant("carol", address=carol)
    libsignal.process_bundle("alice", carol, libsignal.generate_prekeys("carol").bundle)
    root_public, server_cert, server_private, _ = _trust(libsignal)
    cert = libsignal.sender_certificate(
        name="alice",
        server_certificate=server_cert,
        server_private=server_private,
        expiration=2_000_000_000_000,
    )
    dist_id = "d1d1d1d1-0000-4000-8000-000000000004"
    skdm = libsignal.sender_key_distribution("alice", dist_id)
    for member in ("bob", "carol"):
        libsignal.process_sender_key_distribution(member, ALICE, skdm)
    group_body = libsignal.group_encrypt("alice", dist_id, b"fan out")
    content = libsignal.usmc_new(CiphertextType.SENDER_KEY, group_body, cert, group_id=b"g")
    sent = libsignal.sealed_encrypt_multi("alice", [(BOB, 1), (carol, 1)], content)
    recipients, excluded = libsignal.sealed_multi_parse(sent)
    assert set(recipients) == {BOB, carol}
    assert recipients[BOB]["device_ids"] == [1]
    assert excluded == []
    for member, address in (("bob", BOB), ("carol", carol)):
        received = libsignal.sealed_multi_for_recipient(sent, address)
        usmc = libsignal.sealed_decrypt_usmc(member, received)
        assert usmc.sender.sender_uuid == ALICE
        assert libsignal.group_decrypt(member, ALICE, usmc.contents) == b"fan out"
    assert root_public != b""


def test_decryption_error_message_round_trip(libsignal: Libsignal) -> None:
    _pair(libsignal)
    msg = libsignal.encrypt("alice", BOB, b"lost")
    ratchet_key = libsignal.parse_prekey_message(msg.body).signal_message.ratchet_key
    dem = libsignal.decryption_error_message(msg.body, msg.type, 1_700_000_000_123, 1)
    assert dem.ratchet_key == ratchet_key
    assert dem.message is not None
    assert dem.plaintext_content is not None
    parsed = libsignal.parse_decryption_error_message(dem.message)
    assert (parsed.timestamp, parsed.device_id, parsed.ratchet_key) == (
        1_700_000_000_123,
        1,
        ratchet_key,
    )
    carried = libsignal.parse_decryption_error_message(
        dem.plaintext_content, plaintext_content=True
    )
    assert carried.timestamp == 1_700_000_000_123
    group = libsignal.decryption_error_message(b"\x33" * 10, CiphertextType.SENDER_KEY, 5, 2)
    assert group.ratchet_key is None
