"""``kurir client``: the client SDK for a person at a terminal, or for a script (``--json``).

Owns: the ``client`` subcommand's arguments, running one SDK operation per invocation, and
turning results and errors into output: one readable line per item with `rich`, or JSON Lines
with ``--json``. Every user error is one line on stderr (``error: ...``) and exit status 1
(2 for usage errors); no stack trace reaches the user.

Commands::

    kurir client --profile DIR [--server URL] [--json] register ADDRESS [--code C] [--app-key K]
    kurir client --profile DIR send ADDRESS TEXT
    kurir client --profile DIR receive [--wait SECONDS]
    kurir client --profile DIR safety-number ADDRESS
    kurir client --profile DIR lookup ADDRESS
    kurir client --profile DIR trust ADDRESS
    kurir client --profile DIR group create|add|remove|promote|leave|send|list ...  (cli/group.py)

The profile's store is encrypted at rest (docs/threat-model.md §Client device). Its key is
sealed by a key file, ``PROFILE.key`` beside the profile directory unless ``--key-file`` names
another (the development stand-in for an OS keystore), or by a passphrase read from the
environment variable that ``--passphrase-env`` names (never from the command line, which other
users of the machine can see).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.markup import escape

from kurir.cli import group, metadata
from kurir.client.atrest import KeyFile, KeyProvider, Passphrase
from kurir.client.client import DEV_CODE, Client
from kurir.client.content import (
    Body,
    Delete,
    Edit,
    GroupMessage,
    Reaction,
    Receipt,
    SentTranscript,
    Text,
    Typing,
)
from kurir.client.errors import (
    ClientError,
    IdentityChangedError,
    InvalidAddressError,
    UsageError,
)
from kurir.client.events import (
    DeliveryEvent,
    Event,
    ExpiredEvent,
    IdentityChangedEvent,
    MessageEvent,
    UndecryptableEvent,
    UnreadableEvent,
)
from kurir.wire.address import split_address
from kurir.wire.errors import AddressError

__all__ = ["HELP", "add_parser", "run"]

ENV_SERVER: Final = "KURIR_SERVER"
ENV_APP_KEY: Final = "KURIR_APP_KEY"


HELP: Final = "use kurir as a person at a terminal: register, send, receive, safety-number"


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Adds the ``client`` subcommand's arguments to its parser."""
    parser.add_argument("--profile", required=True, type=Path, help="profile directory")
    parser.add_argument(
        "--server",
        default=os.environ.get(ENV_SERVER),
        help=f"server URL, e.g. http://127.0.0.1:8080 (default: ${ENV_SERVER}, or the "
        "server the profile was registered on)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON Lines for scripts")
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="the file holding the key of the profile's encrypted store (default: PROFILE.key "
        "beside the profile directory; created at register)",
    )
    key.add_argument(
        "--passphrase-env",
        metavar="VAR",
        default=None,
        help="protect the profile's store with the passphrase in environment variable VAR",
    )
    commands = parser.add_subparsers(dest="client_command", metavar="COMMAND", required=True)

    register = commands.add_parser("register", help="register this profile as ADDRESS")
    register.add_argument("address", metavar="ADDRESS", help="e.g. whatsapp:+6281234567890")
    register.add_argument("--code", default=DEV_CODE, help="verification code (dev: 123456)")
    register.add_argument(
        "--app-key",
        default=os.environ.get(ENV_APP_KEY),
        help=f"the app's client key (default: ${ENV_APP_KEY}, or the built-in development key)",
    )
    register.add_argument("--device-name", default=None, help="a name for this device")

    send = commands.add_parser("send", help="send TEXT to ADDRESS")
    send.add_argument("address", metavar="ADDRESS")
    send.add_argument("text", metavar="TEXT")

    receive = commands.add_parser("receive", help="print messages and receipts that arrived")
    receive.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep listening this long after the backlog (default: 0)",
    )

    safety = commands.add_parser("safety-number", help="print the safety number with ADDRESS")
    safety.add_argument("address", metavar="ADDRESS")

    lookup = commands.add_parser("lookup", help="tell whether ADDRESS is registered")
    lookup.add_argument("address", metavar="ADDRESS")

    trust = commands.add_parser(
        "trust", help="accept the new identity key of ADDRESS after its safety number changed"
    )
    trust.add_argument("address", metavar="ADDRESS")

    group.add_parser(commands)
    metadata.add_parsers(commands)


def run(args: argparse.Namespace) -> int:
    """Runs one ``kurir client`` command; returns the exit status."""
    out = Output(json_mode=args.json)
    try:
        return asyncio.run(_dispatch(args, out))
    except UsageError as exc:
        out.error(str(exc))
        return 2
    except IdentityChangedError as exc:
        out.error(f"{exc} (kurir client --profile {args.profile} trust {exc.address})")
        return 1
    except ClientError as exc:
        out.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still no stack trace for the user unless asked for
        if os.environ.get("KURIR_DEBUG"):
            raise
        out.error(f"internal error ({type(exc).__name__}); set KURIR_DEBUG=1 for details")
        return 70


class Output:
    """Prints results as readable lines (rich) or as JSON Lines."""

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def result(self, human: str, /, **data: Any) -> None:
        """Prints one result: ``human`` (rich markup) for people, ``data`` for scripts."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            self.console.print(human)

    def error(self, message: str) -> None:
        """Prints a one-line error on stderr (JSON on stdout too in ``--json`` mode)."""
        if self.json_mode:
            sys.stdout.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
        self.errors.print(f"[bold red]error:[/] {escape(message)}")


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    creating = args.client_command == "register"
    client = await Client.open(args.profile, args.server, create=creating, key=_key_provider(args))
    async with client:
        handler = _COMMANDS[args.client_command]
        await handler(client, args, out)
    return 0


def _key_provider(args: argparse.Namespace) -> KeyProvider | None:
    if args.passphrase_env is not None:
        passphrase = os.environ.get(args.passphrase_env, "")
        if not passphrase:
            raise UsageError(f"the environment variable {args.passphrase_env} holds no passphrase")
        return Passphrase(passphrase)
    if args.key_file is not None:
        return KeyFile(args.key_file)
    return None  # the SDK's default: PROFILE.key beside the profile


async def _register(client: Client, args: argparse.Namespace, out: Output) -> None:
    app_key = args.app_key or _dev_app_key(args.address)
    account = await client.register(
        args.address, args.code, app_key=app_key, device_name=args.device_name
    )
    out.result(
        f"registered [bold]{escape(account.address)}[/] (device {account.device_id})",
        event="registered",
        address=account.address,
        account_id=str(account.account_id),
        device_id=account.device_id,
    )


async def _send(client: Client, args: argparse.Namespace, out: Output) -> None:
    await client.connect()
    message_id = await client.send_text(args.address, args.text)
    contact = await client.lookup(args.address)
    out.result(
        f"sent to [bold]{escape(contact.address)}[/] (message {message_id.hex()})",
        event="sent",
        to=contact.address,
        message_id=message_id.hex(),
    )


async def _receive(client: Client, args: argparse.Namespace, out: Output) -> None:
    if args.wait < 0:
        raise UsageError("--wait must not be negative")
    await client.connect()
    await client.wait_drained()
    for event in client.pending_events():
        _print_event(out, event)
        client.handled(event)
    if args.wait > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.wait):
                while True:
                    event = await client.next_event()
                    _print_event(out, event)
                    client.handled(event)


async def _safety_number(client: Client, args: argparse.Namespace, out: Output) -> None:
    digits = await client.safety_number(args.address)
    contact = await client.lookup(args.address)
    groups = " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))
    out.result(
        f"safety number with [bold]{escape(contact.address)}[/]:\n{groups}",
        event="safety_number",
        address=contact.address,
        safety_number=digits,
    )


async def _lookup(client: Client, args: argparse.Namespace, out: Output) -> None:
    contact = await client.lookup(args.address, refresh=True)
    out.result(
        f"[bold]{escape(contact.address)}[/] is registered ({len(contact.devices)} device(s))",
        event="lookup",
        address=contact.address,
        devices=list(contact.devices),
    )


async def _trust(client: Client, args: argparse.Namespace, out: Output) -> None:
    await client.accept_identity(args.address)
    digits = await client.safety_number(args.address)
    contact = await client.lookup(args.address)
    groups = " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))
    out.result(
        f"accepted the new identity of [bold]{escape(contact.address)}[/]; safety number:\n"
        f"{groups}",
        event="trusted",
        address=contact.address,
        safety_number=digits,
    )


_COMMANDS: Final[dict[str, Callable[[Client, argparse.Namespace, Output], Awaitable[None]]]] = {
    "register": _register,
    "send": _send,
    "receive": _receive,
    "safety-number": _safety_number,
    "lookup": _lookup,
    "trust": _trust,
    "group": group.run,
    **metadata.COMMANDS,  # block, requests, archive, mute, sound, contacts, report (issue 5)
}


def _dev_app_key(address: str) -> str:
    """The built-in development client key of the address's app (kurir.server's default)."""
    from kurir.server.config import load_apps  # the CLI may use the server package

    try:
        app_id, _ = split_address(address.strip())
    except AddressError as exc:
        raise InvalidAddressError(f"{address!r} is not a valid address: {exc.message}") from None
    app = load_apps().get(app_id)
    if app is None:
        raise UsageError(f"unknown app {app_id!r}; pass --app-key for a custom catalogue")
    return app.client_key


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _describe(body: Body) -> str:
    inner = body.message if isinstance(body, GroupMessage) else body
    in_group = group.describe(body, "" if inner is body else _describe(inner))
    if in_group is not None:
        return in_group
    match body:
        case Text(text=text, reply_to=None):
            return text
        case Text(text=text, reply_to=ref) if ref is not None:
            return f"(reply to {ref.message_id.hex()[:8]}) {text}"
        case Reaction(emoji=emoji, remove=remove, target=target):
            action = "took back" if remove else "reacted"
            return f"({action} {emoji} on {target.message_id.hex()[:8]})"
        case Edit(text=text, target=target):
            return f"(edited {target.message_id.hex()[:8]}) {text}"
        case Delete(target=target):
            return f"(deleted {target.message_id.hex()[:8]})"
        case Receipt(receipt=kind, message_ids=ids):
            return f"({kind} {len(ids)} message(s))"
        case Typing(started=started):
            return "(typing)" if started else "(stopped typing)"
        case SentTranscript(to_address=to, message=inner):
            return f"(sent from another device to {to}) {_describe(inner)}"
    return "(unsupported content)"


def _print_event(out: Output, event: Event) -> None:
    match event:
        case MessageEvent():
            text = _describe(event.body)
            out.result(
                f"[dim]{_time(event.sent_at)}[/] [bold]{escape(event.sender)}[/]: {escape(text)}",
                event="message",
                sender=event.sender,
                sender_device=event.sender_device,
                message_id=event.message_id.hex(),
                sent_at=event.sent_at,
                server_timestamp=event.server_timestamp,
                kind=type(event.body).__name__.lower(),
                text=text,
            )
        case DeliveryEvent():
            out.result(
                f"[dim]{_time(event.server_timestamp)}[/] delivered: message "
                f"{event.message_id.hex()} (device {event.recipient_device})",
                event="delivered",
                message_id=event.message_id.hex(),
                recipient_device=event.recipient_device,
                server_timestamp=event.server_timestamp,
            )
        case UndecryptableEvent():
            out.result(
                f"[yellow]a message from {escape(event.sender)} could not be decrypted[/]",
                event="undecryptable",
                sender=event.sender,
                message_id=event.message_id.hex(),
                reason=event.reason,
            )
        case IdentityChangedEvent():
            out.result(
                f"[yellow]the safety number with {escape(event.peer)} changed: compare it again"
                " (safety-number)[/]",
                event="identity_changed",
                peer=event.peer,
            )
        case ExpiredEvent():
            out.result(
                f"[yellow]{event.count} message(s) expired on the server before they could be"
                " delivered[/]",
                event="expired",
                count=event.count,
            )
        case UnreadableEvent():
            out.result(
                f"[yellow]a message from {escape(event.sender)} cannot be shown: "
                f"{escape(event.reason)}[/]",
                event="unreadable",
                sender=event.sender,
                message_id=event.message_id.hex(),
                reason=event.reason,
            )
