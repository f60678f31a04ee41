"""Cross-app chat through a real server process: every direction, offline, redelivery, dedup."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from e2e.harness import (
    BUDI,
    GUARD_SECONDS,
    MEGA,
    RINA,
    MakeClient,
    collect,
    messages,
    receipts,
)
from kurir.client.content import MessageRef, Text
from kurir.client.errors import TransportError
from kurir.client.events import MessageEvent


def _text(event: MessageEvent) -> str:
    assert isinstance(event.body, Text)
    return event.body.text


async def test_all_six_directions_with_delivery_receipts(make_client: MakeClient) -> None:
    clients = {a: await make_client(a) for a in (BUDI, MEGA, RINA)}
    sent: dict[tuple[str, str], bytes] = {}
    for sender, recipient in itertools.permutations(clients, 2):
        text = f"from {sender} to {recipient}"
        sent[(sender, recipient)] = await clients[sender].send_text(recipient, text)
    assert len(sent) == 6
    for me, client in clients.items():
        got, got_receipts = await collect(client, messages=2, receipts=2)
        expected = {(s, f"from {s} to {me}") for s in clients if s != me}
        assert {(e.sender, _text(e)) for e in got} == expected
        for event in got:
            assert event.message_id == sent[(event.sender, me)]
            assert event.sender_account == (await client.lookup(event.sender)).account_id
        mine = {mid for (s, _), mid in sent.items() if s == me}
        assert {r.message_id for r in got_receipts} == mine
    for client in clients.values():
        assert client.pending_events() == []


async def test_offline_recipient_gets_everything_in_order_exactly_once(
    make_client: MakeClient,
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA, connect=False)
    texts = [f"pesan {i}" for i in range(8)]
    sent = [await budi.send_text(RINA, text) for text in texts]
    await rina.close()

    again = await make_client(RINA)  # reopens the profile, connects, waits for the backlog
    backlog = again.pending_events()
    assert [_text(e) for e in backlog if isinstance(e, MessageEvent)] == texts
    for event in backlog:
        if isinstance(event, MessageEvent):  # an id begins with its message's sending time
            assert event.message_id[:6] == event.sent_at.to_bytes(6, "big")
        again.handled(event)
    await again.close()

    third = await make_client(RINA)  # nothing comes twice
    assert third.pending_events() == []
    assert [r.message_id for r in await receipts(budi, 8)] == sent


async def test_unacknowledged_envelopes_are_redelivered_after_a_dropped_connection(
    make_client: MakeClient,
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    # Rina's device stops acknowledging (as if it died after storing): the server keeps them.
    incoming = rina._incoming
    assert incoming is not None

    async def lost_ack(seqs: list[int]) -> None:
        del seqs

    incoming._ack = lost_ack
    for i in range(3):
        await budi.send_text(RINA, f"satu {i}")
    first = await messages(rina, 3)
    assert [_text(e) for e in first] == ["satu 0", "satu 1", "satu 2"]
    channel = rina.channel
    assert channel is not None
    await rina.disconnect()

    reopened = await make_client(RINA)  # the server redelivers the three unacknowledged ones
    assert reopened.pending_events() == []  # already stored once: suppressed, not shown again
    await budi.send_text(RINA, "dua")
    assert [_text(e) for e in await messages(reopened, 1)] == ["dua"]
    # Now the acknowledgements went through: Budi gets receipts for all four.
    assert len(await receipts(budi, 4)) == 4


async def test_a_connection_dropped_mid_stream_loses_nothing(make_client: MakeClient) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    await budi.send_text(RINA, "sebelum")
    assert [_text(e) for e in await messages(rina, 1)] == ["sebelum"]
    channel = rina.channel
    assert channel is not None
    await channel.drop()  # abort the TCP connection; the channel reconnects by itself
    await budi.send_text(RINA, "sesudah")
    assert [_text(e) for e in await messages(rina, 1)] == ["sesudah"]
    assert channel.connections >= 2


async def test_a_resent_message_is_shown_once(make_client: MakeClient) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    message_id = await budi.send_text(RINA, "sekali saja")
    again = await budi.send_text(RINA, "sekali saja", message_id=message_id)
    assert again == message_id
    await budi.send_text(RINA, "berikutnya")
    got = await messages(rina, 2)
    assert [_text(e) for e in got] == ["sekali saja", "berikutnya"]
    assert rina.pending_events() == []


async def test_safety_numbers_match_across_apps(make_client: MakeClient) -> None:
    budi = await make_client(BUDI)
    mega = await make_client(MEGA)
    number = await budi.safety_number(MEGA)
    assert len(number) == 60
    assert number.isdigit()
    assert await mega.safety_number(BUDI) == number
    # the session started for the safety number is then used to send
    await budi.send_text(MEGA, "halo")
    assert [_text(e) for e in await messages(mega, 1)] == ["halo"]


async def test_a_reply_refers_to_the_original(make_client: MakeClient) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    original = await budi.send_text(RINA, "apa kabar?")
    (event,) = await messages(rina, 1)
    ref = event_ref(event)
    await rina.send_text(BUDI, "baik", reply_to=ref)
    (reply,), (receipt,) = await collect(budi, messages=1, receipts=1)
    assert receipt.message_id == original
    assert isinstance(reply.body, Text)
    assert reply.body.reply_to is not None
    assert reply.body.reply_to.message_id == original


def event_ref(event: MessageEvent) -> MessageRef:
    return MessageRef(author=str(event.sender_account), message_id=event.message_id)


async def test_concurrent_sends_to_a_new_contact_all_arrive_once(make_client: MakeClient) -> None:
    budi = await make_client(BUDI)
    mega = await make_client(MEGA)
    rina = await make_client(RINA)
    texts = [f"{who} serentak {i}" for who in ("budi", "mega") for i in range(6)]
    await asyncio.gather(
        *((budi if text.startswith("budi") else mega).send_text(RINA, text) for text in texts)
    )
    got = await messages(rina, len(texts))
    assert sorted(_text(e) for e in got) == sorted(texts)
    assert sorted(e.sender for e in got) == sorted([BUDI] * 6 + [MEGA] * 6)
    assert len({e.message_id for e in got}) == len(texts)
    assert rina.pending_events() == []


async def test_a_second_connection_of_the_device_replaces_the_first(
    make_client: MakeClient,
) -> None:
    first = await make_client(RINA)
    waiting = asyncio.ensure_future(first.next_event())
    second = await make_client(RINA, profile=RINA.replace(":", "_"))  # same profile, same device
    with pytest.raises(TransportError, match="replaced"):
        await asyncio.wait_for(waiting, GUARD_SECONDS)
    budi = await make_client(BUDI)
    await budi.send_text(RINA, "ke koneksi baru")
    assert [_text(e) for e in await messages(second, 1)] == ["ke koneksi baru"]
