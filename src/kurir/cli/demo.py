"""``kurir demo``: three users of three apps chat end-to-end encrypted on one embedded server.

Owns: the demo script. It starts a real kurir server inside this process (SQLite in a
temporary directory, 127.0.0.1, a free port), registers ``whatsapp:+62 812-3456-7890``,
``messenger:1000423`` and ``instagram:@rina`` with the client SDK, runs a short conversation
across the apps (Rina is offline for part of it and gets her messages when she reconnects),
and prints side by side what each user read and what the server stored: envelope metadata and
ciphertext sizes, never the text. At the end it searches every file the server wrote, and its
log, for every text that was sent, and fails loudly if one is found.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from kurir.client.client import Client
from kurir.client.content import GroupMessage, MessageRef, Reaction, Text
from kurir.client.errors import ClientError
from kurir.client.events import DeliveryEvent, MessageEvent, MessageId
from kurir.server.app import DB_FILE, create_app
from kurir.server.config import AppCatalogue, ServerConfig, load_apps
from kurir.server.run import bind_socket, make_server
from kurir.server.types import SystemClock, SystemRng
from kurir.wire.frames import Envelope, EnvelopeType

__all__ = ["HELP", "add_parser", "run"]

HELP: Final = "run three users of three apps through an encrypted chat on an embedded server"
GUARD_SECONDS: Final = 30.0

_TYPE_NAMES: Final = {
    EnvelopeType.CIPHERTEXT: "SignalMessage",
    EnvelopeType.PREKEY_BUNDLE: "PreKeySignalMessage",
    EnvelopeType.SERVER_DELIVERY_RECEIPT: "delivery receipt",
    EnvelopeType.SENDER_KEY: "SenderKeyMessage",
}


def add_parser(parser: argparse.ArgumentParser) -> None:
    """``kurir demo`` takes no arguments."""
    del parser


def run(args: argparse.Namespace) -> int:
    """Runs the demo; returns 0 when everything worked."""
    del args
    console = Console(highlight=False)
    logs = _LogCapture()
    root = logging.getLogger()
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    try:
        asyncio.run(_demo(console, logs))
    except (ClientError, OSError, RuntimeError, TimeoutError) as exc:
        console.print(f"[bold red]demo failed:[/] {escape(str(exc) or type(exc).__name__)}")
        return 1
    except Exception as exc:  # a bug: no stack trace for the user unless asked for
        if os.environ.get("KURIR_DEBUG"):
            raise
        console.print(f"[bold red]demo failed:[/] internal error ({type(exc).__name__})")
        return 70
    finally:
        root.removeHandler(logs)
    return 0


class _LogCapture(logging.Handler):
    """Keeps every log line in memory (the server's log, searched for plaintext at the end)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@contextlib.asynccontextmanager
async def _embedded_server(data_dir: Path) -> AsyncIterator[str]:
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    config = ServerConfig(
        apps=load_apps(),
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        default_reachability="everyone",  # strangers of other apps land as message requests
    )
    app = create_app(config, clock=SystemClock(), rng=SystemRng())
    server = make_server(app, host="127.0.0.1", port=port)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(GUARD_SECONDS):
            while not server.started:  # uvicorn sets it once the lifespan startup completed
                if serving.done():
                    raise RuntimeError("the embedded server failed to start")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close()


@dataclass
class _User:
    name: str
    typed: str
    app: str
    colour: str
    client: Client | None = None
    envelopes: list[Envelope] = field(default_factory=list)
    sent: dict[bytes, str] = field(default_factory=dict)
    receipts_seen: int = 0
    registered: str | None = None
    account_id: str | None = None

    @property
    def address(self) -> str:
        return self.registered or self.typed

    def tap(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def require(self) -> Client:
        if self.client is None:
            raise RuntimeError(f"{self.name} is not set up")
        return self.client


class _Script:
    """The conversation, and the table that shows it."""

    def __init__(self, console: Console, data_dir: Path, url: str, profiles: Path) -> None:
        self.console = console
        self.data_dir = data_dir
        self.url = url
        self.profiles = profiles
        apps = load_apps()
        self.users = [
            _User("Budi", "whatsapp:+62 812-3456-7890", "whatsapp", _colour(apps, "whatsapp")),
            _User("Mega", "messenger:1000423", "messenger", _colour(apps, "messenger")),
            _User("Rina", "instagram:@Rina", "instagram", _colour(apps, "instagram")),
        ]
        self.budi, self.mega, self.rina = self.users
        self.texts: list[str] = []
        self.table = Table(show_lines=True, expand=True, title="what each one saw")
        for user in self.users:
            self.table.add_column(
                f"[bold {user.colour}]{user.name}[/]\n{escape(user.app)}", ratio=3, overflow="fold"
            )
        self.table.add_column(
            "[bold]server stored[/]\n(metadata, ciphertext sizes)", ratio=4, overflow="fold"
        )

    def row(self, cells: dict[str, str], server: str) -> None:
        self.table.add_row(*(cells.get(u.name, "") for u in self.users), server)

    async def open(self, user: _User, *, register: bool) -> None:
        client = await Client.open(self.profiles / user.name, self.url, tap=user.tap)
        user.client = client
        if register:
            app = load_apps().get(user.app)
            if app is None:
                raise RuntimeError(f"the catalogue has no app {user.app}")
            await client.register(user.typed, app_key=app.client_key)
        account = client.account
        if account is not None:
            user.registered = account.address
            user.account_id = str(account.account_id)
        await client.connect()
        await client.wait_drained()

    async def send(self, sender: _User, recipient: _User, text: str) -> MessageId:
        client = sender.require()
        message_id = await client.send_text(recipient.address, text)
        sender.sent[message_id] = text
        self.texts.append(text)
        return message_id

    async def read(self, user: _User) -> tuple[MessageEvent, list[str]]:
        """The next message of ``user``, and the receipts that came before it."""
        client = user.require()
        receipts: list[str] = []
        async with asyncio.timeout(GUARD_SECONDS):
            while True:
                event = await client.next_event()
                client.handled(event)
                match event:
                    case MessageEvent():
                        return event, receipts
                    case DeliveryEvent():
                        receipts.append(self._receipt(user, event))

    async def receipts(self, user: _User, count: int) -> list[str]:
        client = user.require()
        found: list[str] = []
        async with asyncio.timeout(GUARD_SECONDS):
            while len(found) < count:
                event = await client.next_event()
                client.handled(event)
                if isinstance(event, DeliveryEvent):
                    found.append(self._receipt(user, event))
        return found

    def _receipt(self, user: _User, event: DeliveryEvent) -> str:
        user.receipts_seen += 1
        text = user.sent.get(event.message_id, "?")
        return f"[green]✓✓ delivered[/] [dim]{escape(_short(text))}[/]"

    def stored(self, user: _User, envelopes: list[Envelope]) -> str:
        lines = []
        for env in envelopes:
            kind = _TYPE_NAMES.get(EnvelopeType(env.type), f"type {env.type}")
            lines.append(
                f"seq {env.seq} → [bold]{escape(user.address)}[/] #1\n"
                f"  from {escape(env.source_address or '?')} #{env.source_device}\n"
                f"  {kind} · [bold]{len(env.body):,} B[/]\n"
                f"  id {env.message_id.hex()[:8]} · {_clock(env.server_timestamp)}"
            )
        return "\n".join(lines)

    def mailbox_rows(self, user: _User) -> list[tuple[int, int, int, str | None]]:
        """What waits in ``user``'s mailbox, read from the server's database file."""
        if user.account_id is None:
            return []
        uri = (self.data_dir / DB_FILE).as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True)
            try:
                rows = db.execute(
                    "SELECT seq, type, length(body), source_address FROM envelopes"
                    " WHERE account_id = ? ORDER BY seq",
                    (user.account_id,),
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            return []  # the server's schema is its own; the table then shows no rows
        return [(int(r[0]), int(r[1]), int(r[2]), r[3]) for r in rows]

    async def play(self) -> None:
        budi, mega, rina = self.users
        for user in self.users:
            await self.open(user, register=True)
        self.row(
            {u.name: f"registered as\n[bold]{escape(u.address)}[/]" for u in self.users},
            "3 accounts · 1 device each\npublic keys only: identity, signed prekey,"
            " ML-KEM-1024 last-resort, 100 EC + 100 ML-KEM-1024 one-time prekeys each",
        )
        await rina.require().close()
        rina.client = None
        self.row({"Rina": "[dim]goes offline[/]"}, "")

        text = "Halo Mega! Budi di sini, dari WhatsApp 👋"
        await self.send(budi, mega, text)
        event, receipts = await self.read(mega)
        requests = [r.address for r in await mega.require().metadata.requests()]
        receipts.append(f"[dim]message request from {escape(', '.join(map(str, requests)))}[/]")
        self.row(
            {"Budi": f"→ Mega: {escape(text)}", "Mega": _lines(receipts, _said(budi, event))},
            self.stored(mega, mega.envelopes[-1:]),
        )
        text = "Hai Budi! Aku balas dari Messenger."
        await self.send(mega, budi, text)
        event, receipts = await self.read(budi)
        self.row(
            {"Budi": _lines(receipts, _said(mega, event)), "Mega": f"→ Budi: {escape(text)}"},
            self.stored(budi, budi.envelopes[-1:]),
        )

        to_rina_1 = "Rina, nanti malam jadi makan bakso?"
        to_rina_2 = "Aku ikut ya, Rina!"
        await self.send(budi, rina, to_rina_1)
        await self.send(mega, rina, to_rina_2)
        queued = await self._queued_for(rina)
        self.row(
            {
                "Budi": f"→ Rina: {escape(to_rina_1)}",
                "Mega": f"→ Rina: {escape(to_rina_2)}",
                "Rina": "[dim](offline)[/]",
            },
            f"mailbox of {escape(rina.address)} (offline), on disk:\n{queued}",
        )

        await self.open(rina, register=False)
        got_1, early = await self.read(rina)
        got_2, more = await self.read(rina)
        self.row(
            {
                "Rina": _lines(
                    ["[dim]back online[/]", *early, *more],
                    _said(budi, got_1) + "\n" + _said(mega, got_2),
                )
            },
            self.stored(rina, rina.envelopes[-2:])
            + "\nRina acknowledged both: deleted; receipts queued for Budi and Mega",
        )

        text = "Jadi dong! Jam 7 ya 🍜"
        await self.send(rina, budi, text)
        event, receipts = await self.read(budi)
        self.row(
            {"Budi": _lines(receipts, _said(rina, event)), "Rina": f"→ Budi: {escape(text)}"},
            self.stored(budi, budi.envelopes[-1:]),
        )
        reaction = Reaction(MessageRef(str(event.sender_account), event.message_id), "👍")
        reacted = await budi.require().send(rina.address, reaction)
        budi.sent[reacted] = "👍"
        event, receipts = await self.read(rina)
        self.row(
            {"Budi": "→ Rina: 👍 on “Jadi dong!…”", "Rina": _lines(receipts, _said(budi, event))},
            self.stored(rina, rina.envelopes[-1:]),
        )
        text = "Sip, sampai nanti!"
        await self.send(rina, mega, text)
        event, receipts = await self.read(mega)
        self.row(
            {"Mega": _lines(receipts, _said(rina, event)), "Rina": f"→ Mega: {escape(text)}"},
            self.stored(mega, mega.envelopes[-1:]),
        )
        late = {}
        for user in self.users:
            late[user.name] = await self.receipts(user, len(user.sent) - user.receipts_seen)
        self.row({name: "\n".join(r) for name, r in late.items()}, "delivery receipts (type 5)")
        safety_budi = await budi.require().safety_number(rina.address)
        safety_rina = await rina.require().safety_number(budi.address)
        if safety_budi != safety_rina:
            raise RuntimeError("safety numbers differ")
        shown = _groups(safety_budi)
        self.row(
            {"Budi": f"safety number with Rina:\n{shown}", "Rina": f"with Budi:\n{shown}"},
            "[dim]the server never sees safety numbers[/]",
        )
        await self.group_chat()
        await self.metadata_tour()

    async def metadata_tour(self) -> None:
        """Issue 5: a block across apps, archive and a custom sound, as the server keeps them."""
        budi, mega, rina = self.users
        await rina.require().metadata.block(mega.address)
        before = await _received_from(rina, mega)
        text = "Rina? Kok diam saja?"
        await self.send(mega, rina, text)
        after = await _received_from(rina, mega)
        if after != before:
            raise RuntimeError("a blocked sender's message was delivered")
        self.row(
            {
                "Rina": f"blocks [bold]{escape(mega.address)}[/] (another app)",
                "Mega": f"→ Rina: {escape(text)}\n[dim]sent ✓, never delivered[/]",
            },
            "blocks are by account, across apps: result ok to Mega, nothing enqueued, no"
            f" receipt; Rina's count from Mega stays {after}",
        )
        md = budi.require().metadata
        await md.set_flags(rina.address, archived=True, sound="kentongan")
        chat = next(c for c in await md.conversations() if c.address == rina.address)
        self.row(
            {"Budi": f"archives the chat with Rina, sound “{chat.sound}”"},
            f"conversation flags (synced to Budi's devices): archived={chat.archived},"
            f" sound={chat.sound}; counts: sent {chat.sent}, received {chat.received}",
        )

    async def group_chat(self) -> None:
        """A group of the three apps: Sender Keys, one ciphertext fanned out by the server."""
        budi, mega, rina = self.users
        name = "Makan bakso"
        info = await budi.require().groups.create(name, [mega.address, rina.address])
        text = "Grup tiga aplikasi: bakso jam 7, jangan telat!"
        await budi.require().groups.send_text(info.group_id, text)
        self.texts.append(text)
        cells = {"Budi": f"created group “{name}” → {escape(text)}"}
        for user in (mega, rina):
            client = user.require()
            async with asyncio.timeout(GUARD_SECONDS):
                while True:
                    event = await client.next_event()
                    client.handled(event)
                    if isinstance(event, MessageEvent) and isinstance(event.body, GroupMessage):
                        break
            cells[user.name] = f"in “{name}”:\n{_said(budi, event)}"
        self.row(
            cells,
            f"group {str(info.group_id)[:8]}: 3 members of 3 apps (group members are metadata"
            f" the server keeps)\n{self.stored(mega, mega.envelopes[-1:])}\n(same"
            " SenderKeyMessage fanned out to Rina)",
        )

    async def _queued_for(self, user: _User) -> str:
        rows = self.mailbox_rows(user)
        if not rows:
            return "(the server's database could not be read)"
        return "\n".join(
            f"seq {seq} from {escape(source or '?')}\n"
            f"  {_TYPE_NAMES.get(EnvelopeType(kind), kind)} · [bold]{size:,} B[/]"
            for seq, kind, size, source in rows
        )

    async def close(self) -> None:
        for user in self.users:
            if user.client is not None:
                await user.client.close()
                user.client = None


async def _demo(console: Console, logs: _LogCapture) -> None:
    with tempfile.TemporaryDirectory(prefix="kurir-demo-") as tmp:
        data_dir = Path(tmp) / "server"
        async with _embedded_server(data_dir) as url:
            console.print(
                Panel(
                    f"kurir demo: an embedded server at [bold]{url}[/] (SQLite in a temporary"
                    " directory).\nThree users of three apps; every message is end-to-end"
                    " encrypted (PQXDH + Double Ratchet) on their devices.",
                    expand=False,
                )
            )
            script = _Script(console, data_dir, url, Path(tmp) / "profiles")
            try:
                await script.play()
            finally:
                await script.close()
            running = _files(data_dir)  # while running: the WAL holds recent writes
        stopped = _files(data_dir)
        console.print(script.table)
        searched = {**{f"{k} (running)": v for k, v in running.items()}, **stopped}
        searched["server log"] = "\n".join(logs.lines).encode()
        leaks = [n for n, data in searched.items() if any(t.encode() in data for t in script.texts)]
        if leaks:
            raise RuntimeError(f"plaintext found in the server's files: {', '.join(leaks)}")
        names = ", ".join(sorted({Path(n.split(" ")[0]).name for n in [*running, *stopped]}))
        total = sum(len(v) for v in searched.values())
        console.print(
            Panel(
                f"Searched every byte the server wrote ({names}; {total:,} bytes, while running"
                f" and after shutdown) and its log ({len(logs.lines)} lines) for the"
                f" {len(script.texts)} texts sent: [bold green]none found[/].",
                expand=False,
            )
        )


async def _received_from(user: _User, peer: _User) -> int:
    chats = await user.require().metadata.conversations()
    return next((c.received for c in chats if c.address == peer.registered), 0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _said(sender: _User, event: MessageEvent) -> str:
    body_of = event.body.message if isinstance(event.body, GroupMessage) else event.body
    match body_of:
        case Text(text=text):
            body = escape(text)
        case Reaction(emoji=emoji):
            body = f"reacted {emoji}"
        case _:
            body = "(message)"
    return f"[bold {sender.colour}]{sender.name}[/] [dim]{escape(event.sender)}[/]:\n{body}"


def _lines(before: list[str], last: str) -> str:
    return "\n".join([*before, last])


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:23] + "…"


def _groups(digits: str) -> str:
    groups = [digits[i : i + 5] for i in range(0, len(digits), 5)]
    return "\n".join(" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4))


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def _colour(apps: AppCatalogue, app_id: str) -> str:
    app = apps.get(app_id)
    return "white" if app is None else app.colour
