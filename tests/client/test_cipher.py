"""Two clients' stores talking through kurir.client.cipher and Incoming, without a server.

Bob's published keys (the `KeyUpload` he would PUT) are turned into the bundle the server
would hand out, so the whole client-side crypto path runs on real SQLite and real crypto.
"""

from __future__ import annotations

import msgspec
import pytest

from client.peers import NOW, Peer, send
from kurir.client import cipher
from kurir.client.content import Content, Text, decode_content
from kurir.client.events import (
    ExpiredEvent,
    MessageEvent,
    UndecryptableEvent,
    event_from_inbox,
)
from kurir.crypto.errors import UntrustedIdentityError
from kurir.crypto.stores import (
    IdentityKeyStore,
    KyberPreKeyStore,
    PreKeyStore,
    SessionStore,
    SignedPreKeyStore,
)
from kurir.wire.frames import Drained, Envelope, EnvelopeType


def _texts(peer: Peer) -> list[str]:
    out = []
    for item in peer.store.inbox():
        event = event_from_inbox(item)
        assert isinstance(event, MessageEvent)
        assert isinstance(event.body, Text)
        out.append(event.body.text)
    return out


def test_the_sqlite_store_satisfies_the_crypto_protocols() -> None:
    peer = Peer(1, "x:1")
    stores: tuple[IdentityKeyStore, PreKeyStore, SignedPreKeyStore, KyberPreKeyStore, SessionStore]
    stores = (peer.protocol,) * 5
    assert len(stores) == 5


async def test_conversation_both_ways_with_prekey_then_normal_messages() -> None:
    alice, bob = Peer(1, "whatsapp:+6281234567890"), Peer(2, "instagram:@rina")
    first = send(alice, bob, "halo", 1)
    assert first.type == EnvelopeType.PREKEY_BUNDLE
    second = send(alice, bob, "apa kabar", 2)
    assert second.type == EnvelopeType.PREKEY_BUNDLE  # until Bob answers
    await bob.incoming.handle(first)
    await bob.incoming.handle(second)
    assert _texts(bob) == ["halo", "apa kabar"]
    assert bob.acked == [1, 2]
    assert bob.store.prekey_counts() == (99, 99)  # one of each one-time kind used

    reply = send(bob, alice, "baik", 1)
    assert reply.type == EnvelopeType.CIPHERTEXT  # Bob's session came from Alice's message
    await alice.incoming.handle(reply)
    assert _texts(alice) == ["baik"]
    third = send(alice, bob, "sip", 3)
    assert third.type == EnvelopeType.CIPHERTEXT
    await bob.incoming.handle(third)
    assert _texts(bob) == ["halo", "apa kabar", "sip"]


async def test_redelivered_envelope_is_stored_once_and_acked_again() -> None:
    alice, bob = Peer(3, "x:1"), Peer(4, "x:2")
    envelope = send(alice, bob, "once", 1)
    await bob.incoming.handle(envelope)
    await bob.incoming.handle(envelope)
    assert _texts(bob) == ["once"]
    assert bob.acked == [1, 1]


async def test_a_failed_decryption_changes_no_session_and_is_reported() -> None:
    alice, bob = Peer(5, "x:1"), Peer(6, "x:2")
    await bob.incoming.handle(send(alice, bob, "first", 1))
    await alice.incoming.handle(send(bob, alice, "answer", 1))
    before = bob.store.session(str(alice.account_id), 1)
    forged = send(alice, bob, "second", 2)
    assert forged.type == EnvelopeType.CIPHERTEXT
    body = bytearray(forged.body)
    body[-1] ^= 1  # break the MAC
    await bob.incoming.handle(_with_body(forged, bytes(body)))
    assert bob.store.session(str(alice.account_id), 1) == before
    events = [event_from_inbox(i) for i in bob.store.inbox()]
    assert isinstance(events[1], UndecryptableEvent)
    assert bob.acked == [1, 2]


async def test_sending_to_a_changed_identity_is_refused_until_accepted() -> None:
    alice, bob = Peer(7, "x:1"), Peer(8, "x:2")
    await bob.incoming.handle(send(alice, bob, "hi", 1))
    impostor = Peer(9, "x:2")
    impostor.account_id = bob.account_id
    identity_key, bundle = impostor.bundle()
    with pytest.raises(UntrustedIdentityError):
        cipher.start_session(
            alice.protocol, str(bob.account_id), identity_key, bundle, now_ms=NOW, rng=alice.rng
        )
    alice.store.put_identity(str(bob.account_id), identity_key)  # what accept_identity does
    cipher.start_session(
        alice.protocol, str(bob.account_id), identity_key, bundle, now_ms=NOW, rng=alice.rng
    )


def _with_body(envelope: Envelope, body: bytes) -> Envelope:
    return msgspec.structs.replace(envelope, body=body)


def test_content_survives_the_cipher_unchanged() -> None:
    alice, bob = Peer(10, "x:1"), Peer(11, "x:2")
    envelope = send(alice, bob, "exact", 1)
    plaintext = cipher.decrypt(
        bob.protocol, str(alice.account_id), 1, envelope.type, envelope.body, rng=bob.rng
    )
    assert decode_content(plaintext) == Content(Text("exact"), sent_at=NOW)


async def test_expired_envelopes_become_one_event() -> None:
    bob = Peer(12, "x:2")
    await bob.incoming.handle(Drained(expired=3))
    await bob.incoming.handle(Drained())
    events = [event_from_inbox(i) for i in bob.store.inbox()]
    assert [(type(e), getattr(e, "count", None)) for e in events] == [(ExpiredEvent, 3)]
    assert bob.incoming.drained.is_set()
