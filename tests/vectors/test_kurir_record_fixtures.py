"""Session records written by earlier kurir releases still load, and load to the same state.

Fixture: ``kurir-session-record-pure-protobuf.json`` (how it was made is inside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kurir.crypto.session import SessionRecord

FIXTURE = Path(__file__).with_name("kurir-session-record-pure-protobuf.json")


def _fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def test_record_from_the_pure_protobuf_encoder_loads() -> None:
    fixture = _fixture()
    record = SessionRecord.deserialize(bytes.fromhex(fixture["record"]))
    state = record.current
    assert state is not None
    assert state.root_key.hex() == fixture["root_key"]
    assert state.previous_counter == fixture["previous_counter"]
    assert state.sender_chain.chain_key.index == fixture["sender_chain_index"]
    assert len(state.receiver_chains) == fixture["receiver_chains"]
    assert state.pending_pre_key is not None
    assert state.pending_pre_key.pre_key_id == fixture["pending_pre_key_id"]
    assert len(record.archived) == fixture["archived"]
    (previous,) = record.previous_states()
    skipped = [[index for index, _ in chain.message_keys] for chain in previous.receiver_chains]
    assert skipped == fixture["archived_skipped_keys"]


def test_rewritten_record_is_the_same_state_without_the_zero_values() -> None:
    old = bytes.fromhex(_fixture()["record"])
    record = SessionRecord.deserialize(old)
    new = record.serialize()
    assert len(new) < len(old)  # previous_counter 0 and empty fields are no longer written
    again = SessionRecord.deserialize(new)
    assert again.current == record.current
    assert again.archived == record.archived  # archived states are kept as they were stored
