"""``kurir client block|unblock|requests|accept|decline|archive|mute|sound|reachability|
contacts|profile|report``: the metadata the server keeps, from a terminal.

This module owns the argument parsing and the printing of those commands (readable with
``rich``, or JSON Lines with ``--json``); the work is done by
:class:`kurir.client.metadata.Metadata`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kurir.client.client import Client
from kurir.client.errors import UsageError

__all__ = ["COMMANDS", "add_parsers"]


class Printer(Protocol):
    """What the commands need of `kurir.cli.client.Output`."""

    json_mode: bool
    console: Console

    def result(self, human: str, /, **data: Any) -> None:
        """Prints one result."""
        ...


def add_parsers(commands: Any) -> None:
    """Adds the metadata commands to the ``client`` command's sub-parsers."""
    for name, text in (
        ("block", "block ADDRESS (their messages are dropped; they are not told)"),
        ("unblock", "lift the block of ADDRESS"),
        ("accept", "accept the message request from ADDRESS"),
        ("decline", "decline the message request from ADDRESS (later messages are dropped)"),
    ):
        cmd = commands.add_parser(name, help=text)
        cmd.add_argument("address", metavar="ADDRESS")
    commands.add_parser("requests", help="list pending message requests")
    commands.add_parser("blocks", help="list the accounts you blocked")
    commands.add_parser("conversations", help="list conversations: state, flags, counts")
    archive = commands.add_parser("archive", help="archive (or --undo) the chat with ADDRESS")
    archive.add_argument("address", metavar="ADDRESS")
    archive.add_argument("--undo", action="store_true", help="unarchive")
    mute = commands.add_parser("mute", help="mute the chat with ADDRESS: on, off or inherit")
    mute.add_argument("address", metavar="ADDRESS")
    mute.add_argument("state", metavar="STATE", nargs="?", default="on")
    sound = commands.add_parser(
        "sound", help="set the notification SOUND of the chat with ADDRESS, or --default"
    )
    sound.add_argument("address", metavar="ADDRESS", nargs="?")
    sound.add_argument("sound", metavar="SOUND")
    sound.add_argument("--default", action="store_true", help="set the account's default sound")
    reach = commands.add_parser(
        "reachability", help="who from other apps may reach you: everyone, contacts, nobody"
    )
    reach.add_argument("value", metavar="VALUE", nargs="?")
    contacts = commands.add_parser(
        "contacts", help="upload an address book (numbers in any format) or list it"
    )
    contacts.add_argument("entries", metavar="ENTRY", nargs="*")
    contacts.add_argument("--file", type=Path, help="one entry per line")
    contacts.add_argument("--region", help="country of national numbers, e.g. ID")
    profile = commands.add_parser("profile", help="show or set your display name and picture")
    profile.add_argument("--name", help="display name ('' removes it)")
    profile.add_argument("--avatar", type=Path, help="picture file (PNG, JPEG, WebP, GIF)")
    commands.add_parser("report", help="everything the server stores about you")


async def _peer_command(client: Client, args: argparse.Namespace, out: Printer) -> None:
    md = client.metadata
    action = {"block": md.block, "unblock": md.unblock, "accept": md.accept}
    action["decline"] = md.decline
    await action[args.client_command](args.address)
    out.result(
        f"{args.client_command}: [bold]{escape(args.address)}[/]",
        event=args.client_command,
        address=args.address,
    )


async def _requests(client: Client, args: argparse.Namespace, out: Printer) -> None:
    requests = await client.metadata.requests()
    if not requests and not out.json_mode:
        out.result("no message requests")
    for r in requests:
        out.result(
            f"request from [bold]{escape(r.address or str(r.account_id))}[/]"
            f" ({r.received} message(s))",
            event="request",
            address=r.address,
            account_id=str(r.account_id),
            received=r.received,
        )


async def _blocks(client: Client, args: argparse.Namespace, out: Printer) -> None:
    for b in await client.metadata.blocks():
        out.result(
            f"blocked [bold]{escape(b.address or str(b.account_id))}[/]",
            event="blocked",
            address=b.address,
            account_id=str(b.account_id),
        )


async def _conversations(client: Client, args: argparse.Namespace, out: Printer) -> None:
    for c in await client.metadata.conversations():
        flags = ", ".join(
            f
            for f in (
                "archived" if c.archived else "",
                "muted" if c.muted else "",
                f"sound {c.sound}" if c.sound else "",
            )
            if f
        )
        out.result(
            f"[bold]{escape(c.address or str(c.account_id))}[/] {c.state}: sent {c.sent},"
            f" received {c.received}{' (' + flags + ')' if flags else ''}",
            event="conversation",
            address=c.address,
            state=c.state,
            archived=c.archived,
            muted=c.muted,
            sound=c.sound,
            sent=c.sent,
            received=c.received,
        )


async def _archive(client: Client, args: argparse.Namespace, out: Printer) -> None:
    info = await client.metadata.set_flags(args.address, archived=not args.undo)
    word = "archived" if info.archived else "unarchived"
    out.result(f"{word} [bold]{escape(args.address)}[/]", event=word, address=info.address)


async def _mute(client: Client, args: argparse.Namespace, out: Printer) -> None:
    info = await client.metadata.set_flags(args.address, muted=args.state)
    out.result(
        f"mute {args.state}: [bold]{escape(args.address)}[/]",
        event="mute",
        address=info.address,
        muted=info.muted,
    )


async def _sound(client: Client, args: argparse.Namespace, out: Printer) -> None:
    if args.default:
        settings = await client.metadata.update_settings(default_sound=args.sound)
        out.result(
            f"default sound: {settings.default_sound}", event="sound", sound=settings.default_sound
        )
        return
    if args.address is None:
        raise UsageError("give ADDRESS SOUND, or --default SOUND")
    info = await client.metadata.set_flags(args.address, sound=args.sound)
    out.result(
        f"sound of [bold]{escape(args.address)}[/]: {info.sound or 'inherit'}",
        event="sound",
        address=info.address,
        sound=info.sound,
    )


async def _reachability(client: Client, args: argparse.Namespace, out: Printer) -> None:
    md = client.metadata
    settings = await (
        md.settings() if args.value is None else md.update_settings(reachability=args.value)
    )
    out.result(
        f"reachable from other apps by: {settings.reachability}",
        event="reachability",
        reachability=settings.reachability,
    )


async def _contacts(client: Client, args: argparse.Namespace, out: Printer) -> None:
    entries = list(args.entries)
    if args.file is not None:
        lines = args.file.read_text(encoding="utf-8").splitlines()
        entries.extend(line.strip() for line in lines if line.strip())
    if not entries:
        for entry in await client.metadata.contacts():
            out.result(escape(entry), event="contact", entry=entry)
        return
    result = await client.metadata.upload_contacts(entries, region=args.region)
    out.result(f"stored {len(result.stored)} contact(s)", event="stored", entries=result.stored)
    for hit in result.found:
        out.result(
            f"  on kurir: {escape(hit.entry)} -> [bold]{escape(hit.address)}[/]",
            event="found",
            entry=hit.entry,
            address=hit.address,
        )


async def _profile(client: Client, args: argparse.Namespace, out: Printer) -> None:
    md = client.metadata
    if args.name is not None:
        await md.set_display_name(args.name or None)
    if args.avatar is not None:
        await md.set_avatar(args.avatar.read_bytes())
    account = client.account
    if account is None:
        raise UsageError("this profile is not registered")
    info = await md.profile(account.account_id)
    size = len(info.avatar) if info.avatar else 0
    out.result(
        f"name: {escape(info.display_name or '-')}, picture: "
        + (f"{info.avatar_type}, {size} bytes" if info.avatar else "-"),
        event="profile",
        display_name=info.display_name,
        avatar_type=info.avatar_type,
        avatar_bytes=size,
    )


async def _report(client: Client, args: argparse.Namespace, out: Printer) -> None:
    report = await client.metadata.report()
    if out.json_mode:
        out.result("", event="report", generated=report.generated, tables=report.tables)
        return
    out.console.print(
        "[bold]What the server stores about you[/] (docs/metadata.md explains each field)"
    )
    for name, rows in report.tables.items():
        table = Table(title=f"{name} ({len(rows)})", title_justify="left", expand=False)
        columns = list(rows[0]) if rows else ["(nothing stored)"]
        for column in columns:
            table.add_column(column, overflow="fold", max_width=36)
        for row in rows:
            table.add_row(*(escape(_cell(row[c])) for c in columns))
        out.console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


COMMANDS: Final[dict[str, Callable[[Client, argparse.Namespace, Printer], Awaitable[None]]]] = {
    "block": _peer_command,
    "unblock": _peer_command,
    "accept": _peer_command,
    "decline": _peer_command,
    "requests": _requests,
    "blocks": _blocks,
    "conversations": _conversations,
    "archive": _archive,
    "mute": _mute,
    "sound": _sound,
    "reachability": _reachability,
    "contacts": _contacts,
    "profile": _profile,
    "report": _report,
}
"""Handler of each metadata command of ``kurir client``."""
