"""Tests of safety numbers against libsignal's published vectors (rust/protocol fingerprint.rs)."""

from __future__ import annotations

import random
import uuid

import pytest

from kurir.crypto.curve import KeyPair, PublicKey
from kurir.crypto.errors import InvalidArgumentError
from kurir.crypto.fingerprint import (
    Fingerprint,
    FingerprintParsingError,
    FingerprintVersionMismatchError,
    ScannableFingerprint,
    stable_id_bytes,
)

# libsignal rust/protocol/src/fingerprint.rs tests (testVectorsVersion1/2 in Java).
ALICE_IDENTITY = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
BOB_IDENTITY = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
DISPLAYABLE = "300354477692869396892869876765458257569162576843440918079131"
ALICE_SCANNABLE_V1 = (
    "080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)
ALICE_SCANNABLE_V2 = (
    "080212220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)
BOB_SCANNABLE_V2 = (
    "080212220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
    "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
)
ALICE_ID = b"+14152222222"
BOB_ID = b"+14153333333"


def _pair(version: int) -> tuple[Fingerprint, Fingerprint]:
    alice_key = PublicKey.deserialize(ALICE_IDENTITY)
    bob_key = PublicKey.deserialize(BOB_IDENTITY)
    alice = Fingerprint.create(
        local_id=ALICE_ID,
        local_key=alice_key,
        remote_id=BOB_ID,
        remote_key=bob_key,
        version=version,
    )
    bob = Fingerprint.create(
        local_id=BOB_ID,
        local_key=bob_key,
        remote_id=ALICE_ID,
        remote_key=alice_key,
        version=version,
    )
    return alice, bob


def test_libsignal_vectors_version_2() -> None:
    alice, bob = _pair(2)
    assert alice.display == DISPLAYABLE
    assert bob.display == DISPLAYABLE
    assert alice.scannable.serialize().hex() == ALICE_SCANNABLE_V2
    assert bob.scannable.serialize().hex() == BOB_SCANNABLE_V2
    assert alice.scannable.compare(bob.scannable.serialize())
    assert bob.scannable.compare(alice.scannable.serialize())
    assert not alice.scannable.compare(alice.scannable.serialize())


def test_libsignal_vectors_version_1() -> None:
    alice, _ = _pair(1)
    assert alice.display == DISPLAYABLE
    assert alice.scannable.serialize().hex() == ALICE_SCANNABLE_V1


def test_scannable_encoding_matches_libsignal() -> None:
    encoded = ScannableFingerprint(2, b"\x12" * 32, b"\xba" * 32).serialize()
    assert encoded.hex() == "080212220a20" + "12" * 32 + "1a220a20" + "ba" * 32
    assert ScannableFingerprint.deserialize(encoded) == ScannableFingerprint(
        2, b"\x12" * 32, b"\xba" * 32
    )


def test_accounts_use_uuid_bytes_and_mitm_changes_the_number() -> None:
    rng = random.Random(7).randbytes
    a, b, mitm = (KeyPair.generate(rng).public_key for _ in range(3))
    a_id, b_id = uuid.UUID(int=1), uuid.UUID(int=2)
    assert stable_id_bytes(a_id) == a_id.bytes
    honest_a = Fingerprint.for_accounts(
        local_account=a_id, local_key=a, remote_account=b_id, remote_key=b
    )
    honest_b = Fingerprint.for_accounts(
        local_account=b_id, local_key=b, remote_account=a_id, remote_key=a
    )
    assert honest_a.display == honest_b.display
    assert len(honest_a.display) == 60
    assert honest_a.display.isdigit()
    fooled_a = Fingerprint.for_accounts(
        local_account=a_id, local_key=a, remote_account=b_id, remote_key=mitm
    )
    assert fooled_a.display != honest_b.display
    assert not fooled_a.scannable.compare(honest_b.scannable.serialize())
    assert not honest_b.scannable.compare(fooled_a.scannable.serialize())
    other_id = Fingerprint.for_accounts(
        local_account=uuid.UUID(int=3), local_key=a, remote_account=b_id, remote_key=b
    )
    assert other_id.display != honest_b.display


def test_version_mismatch_and_malformed_codes() -> None:
    alice, _ = _pair(2)
    _, v1_bob = _pair(1)
    with pytest.raises(FingerprintVersionMismatchError) as info:
        alice.scannable.compare(v1_bob.scannable.serialize())
    assert (info.value.theirs, info.value.ours) == (1, 2)
    with pytest.raises(FingerprintParsingError):
        alice.scannable.compare(b"\x08\x02\x12\xff")
    with pytest.raises(FingerprintParsingError):
        alice.scannable.compare(bytes.fromhex("0802"))  # no halves
    with pytest.raises(FingerprintParsingError):
        ScannableFingerprint.deserialize(bytes.fromhex("12020a00"))  # no version


@pytest.mark.parametrize("iterations", [0, 1, 1_000_001])
def test_iteration_bounds(iterations: int) -> None:
    key = PublicKey.deserialize(ALICE_IDENTITY)
    with pytest.raises(InvalidArgumentError):
        Fingerprint.create(
            local_id=b"a", local_key=key, remote_id=b"b", remote_key=key, iterations=iterations
        )
