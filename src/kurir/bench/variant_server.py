"""``kurir serve`` with allocation tracing, for the idle-connections run.

This module owns the one server variant the bench still uses: ``tracemalloc`` traces Python
allocations (:mod:`tracemalloc`, 8 frames) and writes a snapshot to
``$KURIR_TRACEMALLOC_OUT.<n>`` on each SIGUSR1, so ``kurir bench --idle --trace-memory`` can say
which code holds the memory of an idle connection. (The two server changes it once measured from
outside, uvloop and one wake-up per group commit, are part of the server now.)

Never used in production; nothing imports it but the bench.

Usage: ``python -m kurir.bench.variant_server --variant=tracemalloc [kurir serve options]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Final

from kurir.cli import serve

__all__ = ["TRACEMALLOC_ENV", "VARIANTS", "main"]

VARIANTS: Final = ("tracemalloc",)
TRACEMALLOC_ENV: Final = "KURIR_TRACEMALLOC_OUT"


def main(argv: list[str] | None = None) -> int:
    """Apply the variants, then run ``kurir serve`` with the remaining options."""
    parser = argparse.ArgumentParser(prog="kurir-variant-server")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=[])
    serve.add_parser(parser)
    args = parser.parse_args(argv)
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
