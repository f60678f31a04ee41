"""Two in-process clients (real SQLite stores, real crypto, no server) for client tests.

`Peer` is one registered device whose published keys are turned into the bundles the server
would hand out; `send` encrypts a text from one peer to another and returns the envelope the
server would deliver.
"""

from __future__ import annotations

import random
from uuid import uuid4

from kurir.client import cipher
from kurir.client.content import Content, Text, encode_content
from kurir.client.incoming import Incoming
from kurir.client.keys import initial_upload
from kurir.client.keystore import SqliteProtocolStore
from kurir.client.store import Account, ClientStore
from kurir.crypto.prekeys import IdentityKeyPair
from kurir.wire import api
from kurir.wire.frames import Envelope

NOW = 1_700_000_000_000


class Peer:
    def __init__(self, seed: int, address: str) -> None:
        self.rng = random.Random(seed).randbytes
        self.store = ClientStore.in_memory(lambda: NOW)
        identity = IdentityKeyPair.generate(self.rng)
        self.account_id = uuid4()
        self.store.save_account(
            Account(
                server_url="http://x",
                address=address,
                account_id=self.account_id,
                device_id=1,
                password="p" * 22,
                registration_id=100 + seed,
                identity_private=identity.private_key.serialize(),
                identity_public=identity.public_key.serialize(),
            )
        )
        with self.store.transaction():
            self.upload = initial_upload(self.store, identity, now_ms=NOW, rng=self.rng)
        self.protocol = SqliteProtocolStore(self.store)
        self.acked: list[int] = []
        self.incoming = Incoming(self.store, self.protocol, self._ack, rng=self.rng)
        self.next_prekey = 0

    async def _ack(self, seqs: list[int]) -> None:
        self.acked.extend(seqs)

    def bundle(self) -> tuple[bytes, api.DeviceBundle]:
        """What GET /v1/keys would return for device 1, taking one of each one-time key."""
        up = self.upload
        assert up.identity_key is not None
        assert up.signed_prekey is not None
        assert up.one_time_prekeys is not None
        assert up.pq_one_time_prekeys is not None
        i = self.next_prekey
        self.next_prekey += 1
        return up.identity_key, api.DeviceBundle(
            device_id=1,
            registration_id=self.protocol.get_local_registration_id(),
            signed_prekey=up.signed_prekey,
            prekey=up.one_time_prekeys[i],
            pq_prekey=up.pq_one_time_prekeys[i],
        )


def send(sender: Peer, recipient: Peer, text: str, seq: int) -> Envelope:
    name = str(recipient.account_id)
    if not cipher.has_session(sender.protocol, name, 1, now_ms=NOW):
        identity_key, bundle = recipient.bundle()
        with sender.store.transaction():
            cipher.start_session(
                sender.protocol, name, identity_key, bundle, now_ms=NOW, rng=sender.rng
            )
    with sender.store.transaction():
        sealed = cipher.encrypt(
            sender.protocol, name, 1, encode_content(Content(Text(text), sent_at=NOW)), now_ms=NOW
        )
    assert sealed.registration_id == recipient.protocol.get_local_registration_id()
    return Envelope(
        seq=seq,
        type=sealed.envelope_type,
        source=sender.account_id,
        source_device=1,
        source_address="x:1",
        message_id=seq.to_bytes(16, "big"),
        timestamp=NOW,
        server_timestamp=NOW,
        body=sealed.body,
    )
