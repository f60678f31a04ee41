"""``kurir serve`` with named experimental changes, to measure a server change before making it.

This module owns the variants that ``kurir bench --server-variant NAME`` can measure against the
unchanged server. Each variant is what a proposed change to a shared server file would do,
applied here from the outside so that the server's own files stay untouched:

* ``uvloop``: run the server's event loop on uvloop. ``kurir serve`` calls
  ``uvicorn.Server.serve`` inside ``asyncio.run``, so uvicorn's own loop selection
  (``loop="auto"``) never happens and the server runs on the pure-Python selector loop. The
  proposed change is one line in ``kurir/cli/serve.py``: run ``_serve`` under
  ``uvloop.run`` when uvloop is installed (it is, through ``uvicorn[standard]``).

* ``tracemalloc``: not a proposed change but a measurement: trace Python allocations
  (:mod:`tracemalloc`, 8 frames) and write a snapshot to ``$KURIR_TRACEMALLOC_OUT.<n>`` on each
  SIGUSR1, so the idle run can say which code holds the memory of an idle connection.

Never used in production; nothing imports it but the bench.

Usage: ``python -m kurir.bench.variant_server --variant=uvloop [kurir serve options]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Final

from kurir.cli import serve

__all__ = ["TRACEMALLOC_ENV", "VARIANTS", "main"]

VARIANTS: Final = ("uvloop", "tracemalloc")
TRACEMALLOC_ENV: Final = "KURIR_TRACEMALLOC_OUT"


def main(argv: list[str] | None = None) -> int:
    """Apply the variants, then run ``kurir serve`` with the remaining options."""
    parser = argparse.ArgumentParser(prog="kurir-variant-server")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=[])
    serve.add_parser(parser)
    args = parser.parse_args(argv)
    if "uvloop" in args.variant:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if "tracemalloc" in args.variant:
        _trace_allocations(Path(os.environ[TRACEMALLOC_ENV]))
    return serve.run(args)


def _trace_allocations(output: Path) -> None:
    tracemalloc.start(8)
    taken = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        target = output.with_name(f"{output.name}.{taken}")
        tracemalloc.take_snapshot().dump(str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)  # the reader sees only whole files

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    sys.exit(main())
