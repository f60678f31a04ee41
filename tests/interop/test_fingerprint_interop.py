"""Live safety numbers: kurir and libsignal agree on numbers and accept each other's codes."""

from __future__ import annotations

import random
import uuid

import pytest
from libsignal import Libsignal, LibsignalError

from kurir.crypto.curve import KeyPair, PublicKey
from kurir.crypto.fingerprint import Fingerprint


@pytest.mark.parametrize("seed", range(4))
def test_same_safety_number_for_account_ids(libsignal: Libsignal, seed: int) -> None:
    rng = random.Random(seed)
    ours, theirs = KeyPair.generate(rng.randbytes), KeyPair.generate(rng.randbytes)
    our_id, their_id = uuid.UUID(bytes=rng.randbytes(16)), uuid.UUID(bytes=rng.randbytes(16))
    kurir = Fingerprint.for_accounts(
        local_account=our_id,
        local_key=ours.public_key,
        remote_account=their_id,
        remote_key=theirs.public_key,
    )
    remote = libsignal.fingerprint(
        their_id.bytes, theirs.public_key.serialize(), our_id.bytes, ours.public_key.serialize()
    )
    assert remote.display == kurir.display
    # Each side scans the other's code.
    assert kurir.scannable.compare(remote.scannable)
    assert libsignal.fingerprint_compare(remote.scannable, kurir.scannable.serialize())
    # The same side's code is not a match (the halves are swapped).
    mirror = libsignal.fingerprint(
        our_id.bytes, ours.public_key.serialize(), their_id.bytes, theirs.public_key.serialize()
    )
    assert mirror.scannable == kurir.scannable.serialize()
    assert not kurir.scannable.compare(mirror.scannable)


def test_identity_of_libsignal_participant(libsignal: Libsignal) -> None:
    peer = libsignal.create_participant("ls-peer")
    ours = KeyPair.generate(random.Random(9).randbytes)
    our_id, their_id = uuid.UUID(int=11), uuid.UUID(int=12)
    theirs = libsignal.fingerprint(
        their_id.bytes, peer.identity_public, our_id.bytes, ours.public_key.serialize()
    )
    kurir = Fingerprint.for_accounts(
        local_account=our_id,
        local_key=ours.public_key,
        remote_account=their_id,
        remote_key=PublicKey.deserialize(peer.identity_public),
    )
    assert kurir.display == theirs.display


def test_mismatch_and_version_mismatch(libsignal: Libsignal) -> None:
    rng = random.Random(5).randbytes
    ours, theirs, mitm = (KeyPair.generate(rng) for _ in range(3))
    our_id, their_id = uuid.UUID(int=1), uuid.UUID(int=2)
    fooled = Fingerprint.for_accounts(
        local_account=our_id,
        local_key=ours.public_key,
        remote_account=their_id,
        remote_key=mitm.public_key,
    )
    remote = libsignal.fingerprint(
        their_id.bytes, theirs.public_key.serialize(), our_id.bytes, ours.public_key.serialize()
    )
    assert fooled.display != remote.display
    assert not fooled.scannable.compare(remote.scannable)
    assert not libsignal.fingerprint_compare(remote.scannable, fooled.scannable.serialize())
    v1 = Fingerprint.create(
        local_id=our_id.bytes,
        local_key=ours.public_key,
        remote_id=their_id.bytes,
        remote_key=theirs.public_key,
        version=1,
    )
    with pytest.raises(LibsignalError):
        libsignal.fingerprint_compare(remote.scannable, v1.scannable.serialize())
