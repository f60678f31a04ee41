"""Groups across the three apps through a real server process, with real Sender Keys.

Covers: members of all three apps, an offline member who catches up, a removal followed by
messages the removed member must not decrypt (not even given the ciphertext), and a member
joining midway who reads what follows but cannot decrypt what came before; a member who left,
per-member flags, and the CLI. Retries as Signal does them: a member who lost a sender key, and
a member added while another member's send was in flight, each ask for the message and read it
exactly once; a member removed before the answer is sent nothing. A re-registered member
(same device id, new registration id) gets the sender key again without having to ask.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from e2e.harness import BUDI, GUARD_SECONDS, MEGA, RINA, ServerProcess, app_key
from kurir.client.client import Client
from kurir.client.content import GroupAction, GroupChange, GroupMessage, Text
from kurir.client.errors import ServerError
from kurir.client.events import DeliveryEvent, Event, MessageEvent, UndecryptableEvent
from kurir.client.group_store import SqliteSenderKeyStore
from kurir.client.store import ClientStore
from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.errors import DuplicateMessageError, NoSenderKeyStateError
from kurir.crypto.sender_keys import group_decrypt
from kurir.wire import group_api
from kurir.wire.frames import Envelope, EnvelopeType

DEWI = "instagram:@dewi"


class People:
    """Opens registered clients whose taps keep every envelope they received."""

    def __init__(self, root: Path, server: ServerProcess) -> None:
        self.root = root
        self.server = server
        self.taps: dict[str, list[Envelope]] = {}
        self.opened: list[Client] = []

    def profile(self, address: str) -> Path:
        return self.root / "profiles" / address.replace(":", "_")

    async def open(self, address: str, *, connect: bool = True) -> Client:
        tap = self.taps.setdefault(address, [])
        client = await Client.open(
            self.profile(address), self.server.url, app_key=app_key(address), tap=tap.append
        )
        self.opened.append(client)
        if client.account is None:
            await client.register(address)
        if connect:
            await client.connect()
            await client.wait_drained()
        return client

    async def close(self) -> None:
        for client in self.opened:
            await client.close()


@pytest.fixture
async def people(tmp_path: Path, server: ServerProcess) -> AsyncIterator[People]:
    made = People(tmp_path, server)
    yield made
    await made.close()


async def group_events(client: Client, count: int) -> list[MessageEvent]:
    """The next ``count`` group messages or changes (delivery receipts are skipped)."""
    found: list[MessageEvent] = []
    async with asyncio.timeout(GUARD_SECONDS):
        while len(found) < count:
            event = await client.next_event()
            client.handled(event)
            match event:
                case DeliveryEvent():
                    continue
                case MessageEvent(body=GroupMessage() | GroupChange()):
                    found.append(event)
                case _:
                    raise AssertionError(f"unexpected event {event}")
    return found


def said(event: MessageEvent) -> str:
    body = event.body
    assert isinstance(body, GroupMessage)
    assert isinstance(body.message, Text)
    return body.message.text


def group_ciphertexts(envelopes: list[Envelope]) -> list[Envelope]:
    return [e for e in envelopes if e.type == EnvelopeType.SENDER_KEY]


def try_decrypt(profile: Path, envelope: Envelope) -> bytes:
    """Decrypt a captured group ciphertext with the sender keys kept in ``profile``."""
    assert envelope.source is not None
    assert envelope.source_device is not None
    store = ClientStore.open(profile, lambda: 0)
    try:
        sender = ProtocolAddress(str(envelope.source), DeviceId(envelope.source_device))
        return group_decrypt(envelope.body, SqliteSenderKeyStore(store), sender)
    finally:
        store.close()


async def test_three_apps_offline_member_removal_and_late_joiner(people: People) -> None:
    budi = await people.open(BUDI)
    mega = await people.open(MEGA)
    rina = await people.open(RINA, connect=False)  # registered, offline
    info = await budi.groups.create("Makan malam", [MEGA, RINA])
    gid = info.group_id
    assert {m.address for m in info.members} == {BUDI, MEGA, RINA}
    await budi.groups.send_text(gid, "halo semua")
    await mega.groups.send_text(gid, "halo juga dari Messenger")

    created, first = await group_events(mega, 2)
    assert isinstance(created.body, GroupChange)
    assert created.body.action is GroupAction.CREATED
    assert (created.sender, said(first)) == (BUDI, "halo semua")
    (from_mega,) = await group_events(budi, 1)
    assert (from_mega.sender, said(from_mega)) == (MEGA, "halo juga dari Messenger")

    # the offline member catches up on everything, in order, once
    await rina.connect()
    await rina.wait_drained()
    got = await group_events(rina, 3)
    assert isinstance(got[0].body, GroupChange)
    assert [said(e) for e in got[1:]] == ["halo semua", "halo juga dari Messenger"]
    await rina.groups.send_text(gid, "hadir dari Instagram")
    assert [said(e) for e in await group_events(budi, 1)] == ["hadir dari Instagram"]
    assert [said(e) for e in await group_events(mega, 1)] == ["hadir dari Instagram"]

    # removal: what follows is neither delivered to nor decryptable by Rina
    await budi.groups.remove(gid, RINA)
    await budi.groups.send_text(gid, "rahasia tanpa Rina")
    await mega.groups.send_text(gid, "rahasia juga")
    removed, secret = await group_events(mega, 2)
    assert isinstance(removed.body, GroupChange)
    assert removed.body.action is GroupAction.REMOVED
    assert said(secret) == "rahasia tanpa Rina"
    assert [said(e) for e in await group_events(budi, 1)] == ["rahasia juga"]
    with pytest.raises(ServerError) as refused:
        await rina.groups.send_text(gid, "masih di sini?")
    assert refused.value.code == "not_found"
    (told,) = await group_events(rina, 1)  # the removal, told to her in a 1:1 message
    assert isinstance(told.body, GroupChange)
    assert (told.sender, told.body.action, told.body.targets) == (
        BUDI,
        GroupAction.REMOVED,
        [str(rina.account.account_id if rina.account else "")],
    )
    await rina.close()
    after_removal = group_ciphertexts(people.taps[MEGA])[-2:]  # Budi's change and secret
    after_removal += group_ciphertexts(people.taps[BUDI])[-1:]  # Mega's secret
    assert {e.source_address for e in after_removal} == {BUDI, MEGA}
    for envelope in after_removal:
        with pytest.raises(NoSenderKeyStateError):
            try_decrypt(people.profile(RINA), envelope)
    # what Rina received before the removal she could read (the keys were hers)
    assert not any(e.message_id in {x.message_id for x in after_removal} for e in people.taps[RINA])

    # a member joining midway reads what follows, not what came before
    dewi = await people.open(DEWI)
    await budi.groups.add(gid, [DEWI])
    await mega.groups.send_text(gid, "selamat datang Dewi")
    added, welcome = await group_events(dewi, 2)
    assert isinstance(added.body, GroupChange)
    assert added.body.action is GroupAction.ADDED
    assert (welcome.sender, said(welcome)) == (MEGA, "selamat datang Dewi")
    await dewi.close()
    earlier = [e for e in group_ciphertexts(people.taps[BUDI]) if e.source_address == MEGA]
    assert len(earlier) >= 3
    for envelope in earlier[:-1]:  # the last one is the welcome, which Dewi read
        with pytest.raises((DuplicateMessageError, NoSenderKeyStateError)):
            try_decrypt(people.profile(DEWI), envelope)


async def test_member_who_leaves_cannot_read_later_messages(people: People) -> None:
    budi = await people.open(BUDI)
    mega = await people.open(MEGA)
    rina = await people.open(RINA)
    gid = (await budi.groups.create("Arisan", [MEGA, RINA])).group_id
    await mega.groups.settings(gid, archived=True, muted_until=2_000_000_000_000, sound="kentongan")
    mine = (await mega.groups.get(gid)).settings
    assert (mine.archived, mine.muted_until, mine.sound) == (True, 2_000_000_000_000, "kentongan")
    assert not (await budi.groups.get(gid)).settings.archived
    await mega.groups.send_text(gid, "sebelum")
    assert [said(e) for e in (await group_events(rina, 2))[1:]] == ["sebelum"]
    await rina.groups.leave(gid)
    created, left = await group_events(mega, 2)
    await mega.groups.send_text(gid, "sesudah")
    events = await group_events(budi, 3)
    assert any(
        isinstance(e.body, GroupChange) and e.body.action is GroupAction.LEFT for e in events
    )
    assert said(events[-1]) == "sesudah"
    assert all(g.group_id != gid for g in await rina.groups.list())
    await rina.close()
    latest = group_ciphertexts(people.taps[BUDI])[-1]
    with pytest.raises(NoSenderKeyStateError):
        try_decrypt(people.profile(RINA), latest)
    assert isinstance(created.body, GroupChange)
    assert isinstance(left.body, GroupChange)
    assert (left.sender, left.body.action) == (RINA, GroupAction.LEFT)


async def test_cli_group_commands(server: ServerProcess, tmp_path: Path) -> None:
    from e2e.test_cli import kurir

    profiles = {
        a: ["client", "--profile", str(tmp_path / a.replace(":", "_")), "--json"]
        for a in (BUDI, MEGA, RINA)
    }
    for address, base in profiles.items():
        code, out, err = await kurir(*base, "--server", server.url, "register", address)
        assert code == 0, err
    budi, mega, rina = profiles[BUDI], profiles[MEGA], profiles[RINA]
    code, out, err = await kurir(*budi, "group", "create", "Tiga aplikasi", MEGA, RINA)
    assert code == 0, err
    created = json.loads(out)
    assert created["event"] == "created"
    assert {m["address"] for m in created["members"]} == {BUDI, MEGA, RINA}
    code, out, err = await kurir(*budi, "group", "send", "Tiga aplikasi", "halo grup")
    assert code == 0, err
    code, out, err = await kurir(*rina, "receive")
    assert code == 0, err
    texts = [json.loads(line)["text"] for line in out.splitlines()]
    assert texts[-1].endswith("halo grup")
    assert texts[-1].startswith(f"[group {created['group_id'][:8]}]")
    code, out, err = await kurir(*mega, "group", "remove", created["group_id"], RINA)
    assert code == 1
    assert "admin" in json.loads(out)["error"]
    code, out, err = await kurir(*budi, "group", "remove", created["group_id"], RINA)
    assert code == 0, err
    code, out, err = await kurir(*rina, "group", "list")
    assert (code, out) == (0, "")
    code, out, err = await kurir(*rina, "group", "send", created["group_id"], "masih?")
    assert code == 1
    code, out, err = await kurir(*mega, "group", "list")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert {m["address"] for m in listed["members"]} == {BUDI, MEGA}
    code, out, err = await kurir(*mega, "group", "leave", "Tiga aplikasi")
    assert code == 0, err
    assert json.loads(out)["event"] == "left"


async def events_until(client: Client, last_text: str) -> list[Event]:
    """Every event up to the group message or 1:1 text ``last_text`` (receipts skipped)."""
    found: list[Event] = []
    async with asyncio.timeout(GUARD_SECONDS):
        while True:
            event = await client.next_event()
            client.handled(event)
            if isinstance(event, DeliveryEvent):
                continue
            found.append(event)
            if isinstance(event, MessageEvent):
                body = event.body
                if isinstance(body, GroupMessage) and said(event) == last_text:
                    return found
                if isinstance(body, Text) and body.text == last_text:
                    return found


def readings(events: list[Event], message_id: bytes) -> list[MessageEvent]:
    return [e for e in events if isinstance(e, MessageEvent) and e.message_id == message_id]


async def test_a_member_who_lost_a_sender_key_gets_the_message_again(people: People) -> None:
    budi = await people.open(BUDI)
    await people.open(MEGA)
    rina = await people.open(RINA)
    gid = (await budi.groups.create("Kunci", [MEGA, RINA])).group_id
    await budi.groups.send_text(gid, "satu")
    assert [said(e) for e in (await group_events(rina, 2))[1:]] == ["satu"]
    await rina.close()
    store = ClientStore.open(people.profile(RINA), lambda: 0)  # her sender keys are lost
    with store.transaction():
        store.connection.execute("DELETE FROM group_sender_keys")
    store.close()
    rina = await people.open(RINA)
    lost = await budi.groups.send_text(gid, "dua")
    got = await events_until(rina, "dua")
    # it failed, her client asked, Budi gave his key and the message again: read once
    failed, resent = got
    assert isinstance(failed, UndecryptableEvent)
    assert isinstance(resent, MessageEvent)
    assert failed.message_id == resent.message_id == lost
    assert (resent.sender, said(resent)) == (BUDI, "dua")
    await budi.groups.send_text(gid, "tiga")  # and his key works for what follows
    assert [type(e) for e in await events_until(rina, "tiga")] == [MessageEvent]


async def test_a_member_added_during_a_send_reads_that_message_once(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    budi = await people.open(BUDI)
    mega = await people.open(MEGA)
    dewi = await people.open(DEWI)
    gid = (await budi.groups.create("Balapan", [MEGA])).group_id
    await mega.groups.send_text(gid, "pemanasan")  # Budi holds Mega's key
    # Mega reads the member list, then Budi adds Dewi, then Mega's group_send goes out: the
    # server fans it out to Dewi, whom Mega never gave her key
    racing = mega.groups
    read_before_the_add = await racing.get(gid)
    await budi.groups.add(gid, [DEWI])

    async def the_list_mega_read(group_id: object) -> group_api.GroupInfo:
        return read_before_the_add

    monkeypatch.setattr(racing, "get", the_list_mega_read)
    raced = await racing.send_text(gid, "di tengah jalan")
    assert DEWI not in {m.address for m in read_before_the_add.members}

    got = await events_until(dewi, "di tengah jalan")
    assert isinstance(got[0], MessageEvent)
    assert isinstance(got[0].body, GroupChange)
    assert got[0].body.action is GroupAction.ADDED
    failed, resent = got[1:]
    assert isinstance(failed, UndecryptableEvent)
    assert failed.message_id == raced
    assert isinstance(resent, MessageEvent)
    assert (resent.message_id, resent.sender, said(resent)) == (raced, MEGA, "di tengah jalan")
    # Mega's key came with it: her next message reads directly, and the raced one never again
    await mega.groups.send_text(gid, "sesudahnya")
    after = await events_until(dewi, "sesudahnya")
    assert [type(e) for e in after] == [MessageEvent]
    await mega.settle()
    assert readings(after + dewi.pending_events(), raced) == []
    (at_budi,) = readings(await events_until(budi, "sesudahnya"), raced)  # Budi: once
    assert said(at_budi) == "di tengah jalan"


async def test_a_removed_member_is_not_sent_the_message_it_asks_for(people: People) -> None:
    budi = await people.open(BUDI)
    mega = await people.open(MEGA)
    rina = await people.open(RINA)
    gid = (await budi.groups.create("Keluar", [MEGA, RINA])).group_id
    await mega.groups.send_text(gid, "masih bersama")
    assert [said(e) for e in (await group_events(rina, 2))[1:]] == ["masih bersama"]
    await rina.close()
    store = ClientStore.open(people.profile(RINA), lambda: 0)  # she loses Mega's key
    with store.transaction():
        store.connection.execute("DELETE FROM group_sender_keys")
    store.close()
    secret = await mega.groups.send_text(gid, "sebelum Rina dikeluarkan")  # reaches her mailbox
    await budi.groups.remove(gid, RINA)  # before she asks for it
    seen_before = len(people.taps[RINA])
    rina = await people.open(RINA)
    undecryptable = [e for e in rina.pending_events() if isinstance(e, UndecryptableEvent)]
    assert [e.message_id for e in undecryptable] == [secret]
    await rina.settle()  # her retry request went out; then a text behind it, on the same socket
    await rina.send_text(MEGA, "ping")
    ping = await events_until(mega, "ping")  # Mega handled the retry request before this
    assert readings(ping, secret) == []
    await mega.settle()  # and finished answering it
    await mega.send_text(RINA, "pong")  # everything Mega sent Rina is before this
    got = await events_until(rina, "pong")
    assert readings(got, secret) == []
    from_mega = [
        e
        for e in people.taps[RINA][seen_before:]
        if e.source_address == MEGA
        and e.type in (EnvelopeType.CIPHERTEXT, EnvelopeType.PREKEY_BUNDLE)
    ]
    assert len(from_mega) == 1  # "pong": no sender key, no resend


async def test_a_re_registered_member_gets_the_key_without_asking(
    people: People, tmp_path: Path
) -> None:
    budi = await people.open(BUDI)
    await people.open(MEGA)
    rina = await people.open(RINA)
    gid = (await budi.groups.create("Baru lagi", [MEGA, RINA])).group_id
    await budi.groups.send_text(gid, "satu")
    assert [said(e) for e in (await group_events(rina, 2))[1:]] == ["satu"]
    before = {m.address: m for m in (await budi.groups.get(gid)).members}[RINA]
    await rina.close()
    # Rina reinstalls: same account and device id 1, a new registration id, new keys
    again = await Client.open(
        tmp_path / "rina-reinstalled", people.server.url, app_key=app_key(RINA)
    )
    people.opened.append(again)
    await again.register(RINA)
    await again.connect()
    await again.wait_drained()
    after = {m.address: m for m in (await budi.groups.get(gid)).members}[RINA]
    assert after.devices == before.devices == [1]
    assert after.registration_ids != before.registration_ids
    await budi.accept_identity(RINA)  # her safety number changed; Budi accepts it
    await budi.groups.send_text(gid, "untuk Rina yang baru")
    # the old installation held Budi's key, the new one holds nothing: a new key, given to
    # her before the message, so she reads it without a retry
    assert [type(e) for e in await events_until(again, "untuk Rina yang baru")] == [MessageEvent]
