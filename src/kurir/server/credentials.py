"""Device credential hashing: the server stores HMAC-SHA256(salt, password), never the password.

Passwords are at least 16 random bytes chosen by the client, so a fast keyed hash suffices
(no slow KDF is needed against guessing); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["hash_password", "verify_password"]


def hash_password(salt: bytes, password: str) -> bytes:
    """Return HMAC-SHA256 keyed by ``salt`` over the UTF-8 password text."""
    return hmac.new(salt, password.encode("utf-8"), hashlib.sha256).digest()


def verify_password(salt: bytes, password: str, expected: bytes) -> bool:
    """Tell, in constant time, whether ``password`` hashes to ``expected`` under ``salt``."""
    return hmac.compare_digest(hash_password(salt, password), expected)
