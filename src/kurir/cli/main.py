"""The ``kurir`` command: argument parsing and subcommand dispatch.

This module owns the top-level parser and the registry of subcommands. A subcommand is a
module exposing ``HELP: str`` (one line), ``add_parser(parser) -> None`` (add its arguments to
its own sub-parser) and ``run(args) -> int`` (do the work, return the exit status). To add one,
append ``("name", "kurir.cli.module")`` to :data:`SUBCOMMANDS`. Every subcommand module is
imported when the parser is built, so keep heavy imports inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, Final, Protocol, cast

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main"]

SUBCOMMANDS: Final[list[tuple[str, str]]] = [
    ("serve", "kurir.cli.serve"),
    ("client", "kurir.cli.client"),
    ("demo", "kurir.cli.demo"),
    ("migrate", "kurir.cli.migrate"),
    ("bench", "kurir.cli.bench"),
]
"""(name, module) of every subcommand, in help order."""


class Subcommand(Protocol):
    """What a subcommand module provides."""

    HELP: str

    def add_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add this subcommand's arguments to its parser."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Run; return the process exit status."""
        ...


def _load(module: str) -> Subcommand:
    return cast(Subcommand, importlib.import_module(module))


def build_parser() -> argparse.ArgumentParser:
    """The ``kurir`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="kurir", description="One end-to-end encrypted messaging backbone."
    )
    subparsers: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS:
        command = _load(module)
        sub = subparsers.add_parser(name, help=command.HELP, description=command.HELP)
        command.add_parser(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kurir`` script."""
    args = build_parser().parse_args(argv)
    return _load(str(args._module)).run(args)


if __name__ == "__main__":
    sys.exit(main())
