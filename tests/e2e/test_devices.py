"""The sender repairs its view of the recipient's devices from the server's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.harness import BUDI, RINA, MakeClient, collect, messages, next_event
from kurir.client.content import Text
from kurir.client.errors import IdentityChangedError
from kurir.client.events import IdentityChangedEvent, MessageEvent
from kurir.client.store import ClientStore, Contact


def _profile(tmp_path: Path, address: str) -> Path:
    return tmp_path / "profiles" / address.replace(":", "_")


async def test_wrong_cached_device_lists_are_corrected(
    make_client: MakeClient, tmp_path: Path
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    contact = await budi.lookup(RINA)
    assert contact.devices == (1,)
    for wrong in [(1, 2, 3), ()]:  # extra devices, then a missing one
        handle = ClientStore.open(_profile(tmp_path, BUDI), lambda: 0)
        handle.put_contact(Contact(contact.address, contact.account_id, wrong))
        handle.close()
        await budi.send_text(RINA, f"perangkat {len(wrong)}")
        assert (await budi.lookup(RINA)).devices == (1,)
    got = await messages(rina, 2)
    assert [e.body for e in got] == [Text("perangkat 3"), Text("perangkat 0")]


async def test_a_reregistered_recipient_needs_its_new_identity_accepted(
    make_client: MakeClient,
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    await budi.send_text(RINA, "sebelum")
    await collect(rina, messages=1)
    await rina.close()
    old_number = await budi.safety_number(RINA)

    # Rina registers again on a new phone: new device credentials, registration id and keys.
    new_rina = await make_client(RINA, profile="rina-new-phone")
    with pytest.raises(IdentityChangedError, match="safety number with instagram:@rina changed"):
        await budi.send_text(RINA, "masih di sana?")  # stale device -> new bundle -> new key
    await budi.accept_identity(RINA)
    assert await budi.safety_number(RINA) != old_number
    await budi.send_text(RINA, "masih di sana?")
    got = await messages(new_rina, 1)
    assert got[0].body == Text("masih di sana?")
    assert await new_rina.safety_number(BUDI) == await budi.safety_number(RINA)


async def test_a_message_from_a_changed_identity_is_announced(make_client: MakeClient) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    await rina.send_text(BUDI, "halo")
    await collect(budi, messages=1)
    old_number = await budi.safety_number(RINA)
    await rina.close()

    new_rina = await make_client(RINA, profile="rina-new-phone")
    await new_rina.send_text(BUDI, "nomor baru")
    changed, message = await next_event(budi), await next_event(budi)
    assert isinstance(changed, IdentityChangedEvent)
    assert (changed.peer, changed.peer_account) == (RINA, (await budi.lookup(RINA)).account_id)
    assert isinstance(message, MessageEvent)
    assert message.body == Text("nomor baru")
    new_number = await budi.safety_number(RINA)
    assert new_number != old_number
    assert new_number == await new_rina.safety_number(BUDI)
