"""``kurir client ... group``: groups from the terminal (create, add, remove, leave, send, list).

Owns: the ``group`` command's arguments, naming a group by its id or its exact name, and how
group results and incoming group content are printed. `kurir.cli.client` adds it to its
commands and prints errors as for every client command.

Commands::

    kurir client --profile DIR group create NAME MEMBER...
    kurir client --profile DIR group add GROUP MEMBER...
    kurir client --profile DIR group remove GROUP MEMBER
    kurir client --profile DIR group promote GROUP MEMBER
    kurir client --profile DIR group leave GROUP
    kurir client --profile DIR group send GROUP TEXT
    kurir client --profile DIR group list

GROUP is a group id, or the exact name of one of the account's groups. MEMBER is an address of
any app (``whatsapp:+62...``, ``messenger:1000423``, ``instagram:@rina``).
"""

from __future__ import annotations

import argparse
from typing import Any, Final, Protocol
from uuid import UUID

from rich.markup import escape

from kurir.client.client import Client
from kurir.client.content import Body, GroupChange, GroupMessage
from kurir.client.errors import UsageError
from kurir.wire.group_api import GroupInfo

__all__ = ["HELP", "add_parser", "describe", "run"]

HELP: Final = "create groups of any apps' users, change members, send to a group, list groups"


class Printer(Protocol):
    """What the command needs of `kurir.cli.client.Output`."""

    def result(self, human: str, /, **data: Any) -> None:
        """Prints one result."""
        ...


def add_parser(commands: Any) -> None:
    """Adds ``group`` and its sub-commands to the ``client`` command's sub-parsers."""
    group = commands.add_parser("group", help=HELP)
    actions = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create group NAME with MEMBERs (you are admin)")
    create.add_argument("name", metavar="NAME")
    create.add_argument("members", metavar="MEMBER", nargs="+")
    add = actions.add_parser("add", help="add MEMBERs to GROUP (admins)")
    add.add_argument("group", metavar="GROUP")
    add.add_argument("members", metavar="MEMBER", nargs="+")
    for name, text in (
        ("remove", "remove MEMBER from GROUP (admins)"),
        ("promote", "make MEMBER an admin"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("group", metavar="GROUP")
        action.add_argument("member", metavar="MEMBER")
    leave = actions.add_parser("leave", help="leave GROUP")
    leave.add_argument("group", metavar="GROUP")
    send = actions.add_parser("send", help="send TEXT to GROUP")
    send.add_argument("group", metavar="GROUP")
    send.add_argument("text", metavar="TEXT")
    actions.add_parser("list", help="list your groups")


async def _resolve(client: Client, text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        pass
    found = [g.group_id for g in await client.groups.list() if g.name == text]
    if not found:
        raise UsageError(f"no group named {text!r} (kurir client group list)")
    if len(found) > 1:
        raise UsageError(f"several groups are named {text!r}: use the group id")
    return found[0]


def _members(info: GroupInfo) -> str:
    return ", ".join(f"{m.address}{' (admin)' if m.role == 'admin' else ''}" for m in info.members)


def _show(out: Printer, event: str, info: GroupInfo) -> None:
    out.result(
        f"{event}: [bold]{escape(info.name)}[/] [dim]{info.group_id}[/]\n"
        f"  members: {escape(_members(info))}",
        event=event,
        group_id=str(info.group_id),
        name=info.name,
        revision=info.revision,
        members=[{"address": m.address, "role": m.role} for m in info.members],
    )


async def run(client: Client, args: argparse.Namespace, out: Printer) -> None:
    """Runs one ``group`` action."""
    action = args.group_command
    groups = client.groups
    if action == "list":
        for info in await groups.list():
            _show(out, "group", info)
        return
    await client.connect()
    if action == "create":
        _show(out, "created", await groups.create(args.name, args.members))
        return
    group_id = await _resolve(client, args.group)
    if action == "add":
        _show(out, "added", await groups.add(group_id, args.members))
    elif action == "remove":
        _show(out, "removed", await groups.remove(group_id, args.member))
    elif action == "promote":
        _show(out, "promoted", await groups.promote(group_id, args.member))
    elif action == "leave":
        await groups.leave(group_id)
        out.result(f"left group [dim]{group_id}[/]", event="left", group_id=str(group_id))
    elif action == "send":
        message_id = await groups.send_text(group_id, args.text)
        out.result(
            f"sent to group [dim]{group_id}[/] (message {message_id.hex()})",
            event="sent",
            group_id=str(group_id),
            message_id=message_id.hex(),
        )


def describe(body: Body, inner: str) -> str | None:
    """A one-line description of group content (``inner`` describes the message itself), or
    None for content that is not a group's."""
    match body:
        case GroupMessage(group_id=group_id):
            return f"[group {group_id[:8]}] {inner}"
        case GroupChange(group_id=group_id, action=action, name=name, targets=targets):
            who = f" {len(targets)} member(s)" if targets else ""
            return f"[group {group_id[:8]}] ({action}{who}; group “{name}”)"
    return None
