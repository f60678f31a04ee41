"""Live retry requests: kurir's ``PlaintextContent`` is byte for byte libsignal's, both ways."""

from __future__ import annotations

import pytest
from libsignal import CiphertextType, Libsignal

from kurir.client.retry import (
    RetryRequest,
    decode_retry_request,
    encode_retry_request,
    retry_request_for,
)
from kurir.wire.frames import EnvelopeType

BOB = "796abedb-ca4e-4f18-8803-1fde5b921f9f"
_ENVELOPE_TYPES = {
    CiphertextType.PREKEY: EnvelopeType.PREKEY_BUNDLE,
    CiphertextType.WHISPER: EnvelopeType.CIPHERTEXT,
}


@pytest.mark.parametrize("answered", [False, True], ids=["prekey", "whisper"])
def test_kurir_asks_for_a_resend_exactly_as_libsignal_does(
    libsignal: Libsignal, answered: bool
) -> None:
    libsignal.create_participant("alice")
    libsignal.create_participant("bob", address=BOB)
    libsignal.process_bundle("alice", BOB, libsignal.generate_prekeys("bob").bundle)
    failed = libsignal.encrypt("alice", BOB, b"lost")
    if answered:  # Bob answers, so Alice's next message is a Whisper message
        libsignal.decrypt("bob", "alice", failed)
        libsignal.decrypt("alice", BOB, libsignal.encrypt("bob", "alice", b"reply"))
        failed = libsignal.encrypt("alice", BOB, b"lost again")
    assert failed.type == (CiphertextType.WHISPER if answered else CiphertextType.PREKEY)

    theirs = libsignal.decryption_error_message(failed.body, failed.type, 1_700_000_000_123, 3)
    ours = retry_request_for(
        _ENVELOPE_TYPES[failed.type], failed.body, timestamp=1_700_000_000_123, device=3
    )
    assert ours.ratchet_key is not None
    assert ours.ratchet_key == theirs.ratchet_key
    assert encode_retry_request(ours) == theirs.plaintext_content
    assert theirs.plaintext_content is not None
    assert decode_retry_request(theirs.plaintext_content) == ours


def test_libsignal_reads_kurirs_request_without_a_ratchet_key(libsignal: Libsignal) -> None:
    body = encode_retry_request(RetryRequest(timestamp=2**40 + 5, device=7))
    parsed = libsignal.parse_decryption_error_message(body, plaintext_content=True)
    assert (parsed.timestamp, parsed.device_id, parsed.ratchet_key) == (2**40 + 5, 7, None)
