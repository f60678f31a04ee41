"""A message that cannot be decrypted is asked for again, and arrives once, under its own id."""

from __future__ import annotations

from pathlib import Path

from e2e.harness import BUDI, RINA, MakeClient, collect, next_event
from kurir.client.content import Text
from kurir.client.events import MessageEvent, UndecryptableEvent
from kurir.client.store import ClientStore


async def test_lost_session_state_is_repaired_by_a_resend(
    make_client: MakeClient, tmp_path: Path
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    await budi.send_text(RINA, "halo")
    await collect(rina, messages=1)
    await rina.send_text(BUDI, "hai")
    await collect(budi, messages=1, receipts=1)
    await collect(rina, receipts=1)
    assert budi.account is not None

    # Rina's device loses its session with Budi (e.g. restored from an old backup).
    profile = tmp_path / "profiles" / RINA.replace(":", "_")
    other_handle = ClientStore.open(profile, lambda: 0)
    other_handle.delete_session(str(budi.account.account_id), 1)
    other_handle.close()

    message_id = await budi.send_text(RINA, "sudah makan?")
    failed = await next_event(rina)
    assert isinstance(failed, UndecryptableEvent)
    assert failed.message_id == message_id
    resent = await next_event(rina)  # Rina asked, Budi resent on a new session
    assert isinstance(resent, MessageEvent)
    assert resent.message_id == message_id
    assert resent.body == Text("sudah makan?")
    assert rina.pending_events() == []

    # and the repaired session works both ways
    await rina.send_text(BUDI, "sudah")
    got, receipts = await collect(budi, messages=1, receipts=1)
    assert [r.message_id for r in receipts] == [message_id]  # the resend is not reported
    assert got[0].body == Text("sudah")
