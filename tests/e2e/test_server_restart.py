"""Nothing the server accepted is lost when it is killed: a restarted server delivers it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from e2e.harness import BUDI, RINA, MakeClient, ServerProcess, collect, run_server
from kurir.client.content import Text


async def test_messages_accepted_before_a_kill_are_delivered_after_restart(
    make_client: MakeClient, server: ServerProcess, tmp_path: Path
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA, connect=False)
    texts = [f"sebelum mati {i}" for i in range(5)]
    for text in texts:
        await budi.send_text(RINA, text)  # returns once the server stored it durably
    await budi.disconnect()
    await server.kill()

    port = urlsplit(server.url).port
    assert port is not None
    async with run_server(server.data_dir, tmp_path / "server-2.log", port=port) as again:
        assert again.url == server.url
        await rina.connect()
        await rina.wait_drained()
        got, _ = await collect(rina, messages=5)
        assert [e.body.text for e in got if isinstance(e.body, Text)] == texts
        await budi.connect()
        await budi.wait_drained()
        _, receipts = await collect(budi, receipts=5)
        assert len({r.message_id for r in receipts}) == 5
        assert rina.pending_events() == []


async def test_connected_clients_reconnect_by_themselves_after_a_restart(
    make_client: MakeClient, server: ServerProcess, tmp_path: Path
) -> None:
    budi = await make_client(BUDI)
    rina = await make_client(RINA)
    await budi.send_text(RINA, "satu")
    await collect(rina, messages=1)
    await server.kill()
    port = urlsplit(server.url).port
    assert port is not None
    async with run_server(server.data_dir, tmp_path / "server-2.log", port=port):
        await budi.send_text(RINA, "dua")  # waits for the channel to reconnect, then sends
        got, _ = await collect(rina, messages=1)
        assert [e.body.text for e in got if isinstance(e.body, Text)] == ["dua"]
        channel = rina.channel
        assert channel is not None
        assert channel.connections >= 2
