"""Known answers recorded from libsignal 0.90.0: safety numbers (``libsignal-fingerprint.json``).

Each case is libsignal's ``Fingerprint.new(5200, 2, ...)``; kurir must produce the same display
string and scannable bytes and accept the remote side's code. No Node.js needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kurir.crypto.curve import PublicKey
from kurir.crypto.fingerprint import Fingerprint

VECTORS = json.loads((Path(__file__).parent / "libsignal-fingerprint.json").read_text())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["local_id"][:8])
def test_safety_numbers_match_libsignal(case: dict[str, Any]) -> None:
    ours = Fingerprint.create(
        local_id=bytes.fromhex(case["local_id"]),
        local_key=PublicKey.deserialize(bytes.fromhex(case["local_key"])),
        remote_id=bytes.fromhex(case["remote_id"]),
        remote_key=PublicKey.deserialize(bytes.fromhex(case["remote_key"])),
        iterations=case["iterations"],
        version=case["version"],
    )
    assert ours.display == case["display"]
    assert ours.scannable.serialize() == bytes.fromhex(case["scannable"])
    assert ours.scannable.compare(bytes.fromhex(case["remote_scannable"]))
    assert not ours.scannable.compare(bytes.fromhex(case["scannable"]))


def test_vectors_cover_uuid_identifiers() -> None:
    assert any(len(bytes.fromhex(c["local_id"])) == 16 for c in VECTORS["cases"])
