"""How a client makes a message id (docs/protocol.md, `send`): the sending time, then random
bits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kurir.wire.limits import MESSAGE_ID_BYTES

__all__ = ["new_message_id"]

_TIME_BYTES: Final = 6


def new_message_id(now_ms: int, rng: Callable[[int], bytes]) -> bytes:
    """A fresh id for a message sent at ``now_ms``: those milliseconds (48 bits, big-endian,
    modulo 2**48) and 80 bits from ``rng``, the layout of a UUIDv7.

    Time first because the server keeps a delivery record per recipient device and message
    id, ordered by id, to refuse a retried message it already delivered: ids that grow with
    time add each record at the end of its device's records, where the last ones were
    written, instead of at a random place in a table that keeps them as long as an envelope
    may live (30 days by default): a b-tree page written per message, and copied again at
    each WAL checkpoint. The server sees the sending time anyway (the send's timestamp), so
    the id tells it nothing new; the random part keeps ids unique however many are made in
    one millisecond. The server accepts any 16 bytes: this is what it is fastest with.
    """
    time = (now_ms % (1 << 8 * _TIME_BYTES)).to_bytes(_TIME_BYTES, "big")
    return time + rng(MESSAGE_ID_BYTES - _TIME_BYTES)
