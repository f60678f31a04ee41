"""Size and count limits of the kurir wire protocol (docs/protocol.md §Limits).

Both peers enforce these; the server refuses anything beyond them with a clear error.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_ACK_SEQS",
    "MAX_ADDRESS_LENGTH",
    "MAX_BODY_BYTES",
    "MAX_DEVICE_NAME_LENGTH",
    "MAX_DIRECTORY_ADDRESSES",
    "MAX_FRAME_BYTES",
    "MAX_HTTP_BODY_BYTES",
    "MAX_MESSAGES_PER_SEND",
    "MAX_ONE_TIME_PREKEYS_PER_UPLOAD",
    "MAX_PASSWORD_BYTES",
    "MAX_REGISTRATION_ID",
    "MESSAGE_ID_BYTES",
    "MIN_PASSWORD_BYTES",
]

MAX_FRAME_BYTES: Final = 256 * 1024
"""Largest WebSocket frame (either direction), in bytes."""
MAX_BODY_BYTES: Final = 64 * 1024
"""Largest ciphertext body of one device message, in bytes."""
MAX_MESSAGES_PER_SEND: Final = 100
"""Most device messages in one `send` frame."""
MAX_ACK_SEQS: Final = 1000
"""Most sequence numbers in one `ack` frame."""
MESSAGE_ID_BYTES: Final = 16
"""Length of a client-chosen message id."""
MAX_HTTP_BODY_BYTES: Final = 1024 * 1024
"""Largest HTTP request body, in bytes."""
MAX_ADDRESS_LENGTH: Final = 128
"""Longest address string `app:identifier`, in characters."""
MAX_DIRECTORY_ADDRESSES: Final = 1000
"""Most addresses in one directory lookup."""
MAX_ONE_TIME_PREKEYS_PER_UPLOAD: Final = 100
"""Most one-time prekeys (of each kind) in one key upload."""
MIN_PASSWORD_BYTES: Final = 16
"""Fewest random bytes in a device password."""
MAX_PASSWORD_BYTES: Final = 64
"""Most bytes in a device password."""
MAX_REGISTRATION_ID: Final = 16380
"""Largest registration id (libsignal's 14-bit range, 1..16380)."""
MAX_DEVICE_NAME_LENGTH: Final = 64
"""Longest device name, in characters."""
