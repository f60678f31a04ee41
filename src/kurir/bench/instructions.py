"""Instructions per message: the server under callgrind, counted inside each phase's window.

This module owns ``kurir bench --callgrind DIR``. The server (and, through
``--trace-children``, its SQLite writer process) runs under valgrind's callgrind with
instrumentation off; when a phase's counted window opens, :class:`InstructionCounter` turns it
on in every process of the server (``callgrind_control --instr=on``), and when the window
closes it dumps the counts (one part file per process and phase) and turns it off again. The
run's figure is the instructions each process executed in the window, divided by the messages
delivered in it.

Why: a shared two-core virtual machine's speed drifts by 10 to 30% from run to run (other
tenants, frequency), so a change worth a few percent cannot be seen in messages per second.
Instructions executed do not drift with the machine: callgrind counts the same for the same
work whatever else runs. Under callgrind the server runs about 50 times slower, so the load is
a different regime from the real one (larger group-commit batches); compare runs of the same
command, and check the gain in real throughput as well.

It knows nothing of the load itself; :mod:`kurir.bench.load` calls it at the window's edges.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = ["InstructionCounter", "callgrind_available", "wrapper"]

_TOTALS: Final = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)
_TIMEOUT_S: Final = 120.0


def callgrind_available() -> bool:
    """Whether valgrind and callgrind_control are installed (Debian: ``valgrind``)."""
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def wrapper(directory: Path) -> tuple[str, ...]:
    """The command prefix that runs the server under callgrind, counting nothing until told,
    with one output file per process in ``directory``."""
    return (
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--instr-atstart=no",
        f"--callgrind-out-file={directory / 'callgrind.%p'}",
    )


class InstructionCounter:
    """Turns counting on and off in the server's processes and reads the counts back.

    Args:
        directory: Where callgrind writes (the directory given to :func:`wrapper`).
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._windows = 0

    def open_window(self, pids: Sequence[int]) -> None:
        """Start counting in every one of ``pids``."""
        for pid in pids:
            self._control("--instr=on", pid)

    def close_window(self, pids: Sequence[int]) -> dict[int, int]:
        """Stop counting; return the instructions each of ``pids`` executed since
        :meth:`open_window`."""
        self._windows += 1
        for pid in pids:
            self._control("--dump", pid)
            self._control("--instr=off", pid)
        return {pid: self._part(pid, self._windows) for pid in pids}

    def _control(self, option: str, pid: int) -> None:
        subprocess.run(  # noqa: S603 - valgrind's own tool, fixed arguments
            ["callgrind_control", option, str(pid)],  # noqa: S607 - found on PATH
            check=True,
            capture_output=True,
            timeout=_TIMEOUT_S,
        )

    def _part(self, pid: int, window: int) -> int:
        """The instructions in the part file of ``pid``'s ``window``-th dump (0: none)."""
        path = self._directory / f"callgrind.{pid}.{window}"
        if not path.exists():
            return 0
        found = _TOTALS.search(path.read_bytes())
        return 0 if found is None else int(found.group(1))
