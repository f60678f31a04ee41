"""``kurir serve`` with named experimental changes, to measure a server change before making it.

This module owns the variants that ``kurir bench --server-variant NAME`` can measure against the
unchanged server. Each variant is what a proposed change to a shared server file would do,
applied here from the outside so that the server's own files stay untouched:

* ``uvloop``: run the server's event loop on uvloop. ``kurir serve`` calls
  ``uvicorn.Server.serve`` inside ``asyncio.run``, so uvicorn's own loop selection
  (``loop="auto"``) never happens and the server runs on the pure-Python selector loop. The
  proposed change is one line in ``kurir/cli/serve.py``: run ``_serve`` under
  ``uvloop.run`` when uvloop is installed (it is, through ``uvicorn[standard]``).

Never used in production; nothing imports it but the bench.

Usage: ``python -m kurir.bench.variant_server --variant=uvloop [kurir serve options]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Final

from kurir.cli import serve

__all__ = ["VARIANTS", "main"]

VARIANTS: Final = ("uvloop",)


def main(argv: list[str] | None = None) -> int:
    """Apply the variants, then run ``kurir serve`` with the remaining options."""
    parser = argparse.ArgumentParser(prog="kurir-variant-server")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=[])
    serve.add_parser(parser)
    args = parser.parse_args(argv)
    if "uvloop" in args.variant:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return serve.run(args)


if __name__ == "__main__":
    sys.exit(main())
