"""Known answers recorded from libsignal 0.90.0: Sender Keys (``libsignal-sender-keys.json``).

kurir processes libsignal's distribution messages and must decrypt libsignal's group messages
(out of order), reject what libsignal rejects, and parse both formats field for field. No
Node.js needed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.errors import DuplicateMessageError, InvalidSignatureError
from kurir.crypto.sender_key_record import SenderChainKey
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    group_decrypt,
    process_sender_key_distribution_message,
)

VECTORS = json.loads((Path(__file__).parent / "libsignal-sender-keys.json").read_text())
SENDER = ProtocolAddress(VECTORS["sender"]["address"], DeviceId(VECTORS["sender"]["device_id"]))
DISTRIBUTION_ID = uuid.UUID(VECTORS["distribution_id"])
MESSAGES: list[dict[str, Any]] = VECTORS["messages"]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def _receiver(distribution: str) -> InMemorySenderKeyStore:
    store = InMemorySenderKeyStore()
    skdm = SenderKeyDistributionMessage.deserialize(h(VECTORS[distribution]["message"]))
    process_sender_key_distribution_message(SENDER, skdm, store)
    return store


@pytest.mark.parametrize("name", ["distribution", "late_distribution"])
def test_distribution_messages_parse_and_reencode(name: str) -> None:
    recorded = VECTORS[name]
    parsed = SenderKeyDistributionMessage.deserialize(h(recorded["message"]))
    assert parsed.distribution_id == DISTRIBUTION_ID
    assert parsed.chain_id == recorded["chain_id"]
    assert parsed.iteration == recorded["iteration"]
    assert parsed.chain_key == h(recorded["chain_key"])
    assert parsed.signing_key.serialize() == h(recorded["signing_key"])
    again = SenderKeyDistributionMessage.create(
        distribution_id=parsed.distribution_id,
        chain_id=parsed.chain_id,
        iteration=parsed.iteration,
        chain_key=parsed.chain_key,
        signing_key=parsed.signing_key,
    )
    assert again.serialized == h(recorded["message"])


def test_chain_key_schedule_matches_libsignal() -> None:
    # Advancing the first chain key five times gives the late distribution's chain key.
    chain = SenderChainKey(0, h(VECTORS["distribution"]["chain_key"]))
    for _ in range(VECTORS["late_distribution"]["iteration"]):
        chain = chain.next()
    assert chain.seed == h(VECTORS["late_distribution"]["chain_key"])


def test_messages_decrypt_in_recorded_order() -> None:
    store = _receiver("distribution")
    for index in VECTORS["receive_order"]:
        message = MESSAGES[index]
        assert group_decrypt(h(message["body"]), store, SENDER) == h(message["plaintext"])
    for message in MESSAGES:
        with pytest.raises(DuplicateMessageError):
            group_decrypt(h(message["body"]), store, SENDER)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(m["index"]))
def test_messages_parse_and_verify(message: dict[str, Any]) -> None:
    parsed = SenderKeyMessage.deserialize(h(message["body"]))
    assert parsed.serialized[0] == 0x33
    assert parsed.distribution_id == DISTRIBUTION_ID
    assert parsed.chain_id == message["chain_id"]
    assert parsed.iteration == message["iteration"]
    signing = SenderKeyDistributionMessage.deserialize(h(VECTORS["distribution"]["message"]))
    assert parsed.verify_signature(signing.signing_key)


def test_late_receiver_reads_only_later_messages() -> None:
    late = VECTORS["late_distribution"]["iteration"]
    store = _receiver("late_distribution")
    for message in MESSAGES[late:]:
        assert group_decrypt(h(message["body"]), store, SENDER) == h(message["plaintext"])
    # libsignal: "DuplicatedMessage: message with old counter ..." for an earlier iteration.
    assert VECTORS["late_receiver_old_message_error"].startswith("DuplicatedMessage")
    with pytest.raises(DuplicateMessageError):
        group_decrypt(h(MESSAGES[0]["body"]), store, SENDER)


def test_tampered_recorded_message_is_rejected_and_changes_nothing() -> None:
    store = _receiver("distribution")
    before = store.load_sender_key(SENDER, DISTRIBUTION_ID)
    body = bytearray(h(MESSAGES[2]["body"]))
    body[-70] ^= 0x01  # inside the ciphertext, under the signature
    with pytest.raises(InvalidSignatureError):
        group_decrypt(bytes(body), store, SENDER)
    assert store.load_sender_key(SENDER, DISTRIBUTION_ID) == before
    assert group_decrypt(h(MESSAGES[2]["body"]), store, SENDER) == h(MESSAGES[2]["plaintext"])
