"""Message ids: the sending time first (so they sort by it), then random bits."""

from __future__ import annotations

import os
import random

from hypothesis import given
from hypothesis import strategies as st

from kurir.wire.limits import MESSAGE_ID_BYTES
from kurir.wire.message_id import new_message_id

_MS = st.integers(min_value=0, max_value=(1 << 48) - 1)


@given(_MS, _MS, st.binary(min_size=10, max_size=10), st.binary(min_size=10, max_size=10))
def test_ids_sort_by_sending_time(a: int, b: int, noise_a: bytes, noise_b: bytes) -> None:
    id_a = new_message_id(a, lambda n: noise_a[:n])
    id_b = new_message_id(b, lambda n: noise_b[:n])
    assert len(id_a) == len(id_b) == MESSAGE_ID_BYTES
    if a < b:
        assert id_a < id_b
    assert id_a[:6] == a.to_bytes(6, "big")
    assert id_a[6:] == noise_a


def test_ids_of_one_millisecond_differ() -> None:
    ids = {new_message_id(1_795_600_000_000, os.urandom) for _ in range(10_000)}
    assert len(ids) == 10_000


def test_the_time_wraps_after_48_bits_instead_of_failing() -> None:
    rng = random.Random(1).randbytes
    assert new_message_id((1 << 48) + 5, rng)[:6] == (5).to_bytes(6, "big")
