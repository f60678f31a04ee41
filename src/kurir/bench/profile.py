"""Where the server's time goes: py-spy sampling of the server process and a summary.

This module owns recording the running ``kurir serve`` process with py-spy (an external
sampling profiler: no change to the server, low overhead, every thread) in its "raw" collapsed
stack format, and summarising such a file: samples per thread, the functions with the most
samples on top of the stack (own time) and in the stack (inclusive time). Samples are taken only
of threads that are running (not idle), so shares are shares of the server's CPU time.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

__all__ = ["ServerProfiler", "format_summary", "summarise"]

INSTALL_HINT: Final = "profiling needs py-spy: pip install py-spy (it is in the 'bench' extra)"
_LOCATION: Final = re.compile(r" \((?:.*/site-packages/|.*/src/)?([^()]*?):\d+\)$")
_TOP: Final = 25


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError(INSTALL_HINT)
    return found


class ServerProfiler:
    """py-spy recording one process until :meth:`stop`.

    Args:
        output: Where the collapsed stacks go.
        rate: Samples per second.
    """

    def __init__(self, output: Path, *, rate: int = 200) -> None:
        self._output = output
        self._rate = rate
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        """Start sampling ``pid`` (needs ptrace permission: root, or CAP_SYS_PTRACE)."""
        self._output.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(  # noqa: S603 - py-spy with fixed arguments
            [
                _py_spy(),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(self._rate),
                "--format",
                "raw",
                "--threads",
                "--subprocesses",  # the SQLite writer process
                "--nonblocking",
                "--output",
                str(self._output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Stop sampling (py-spy writes its file on SIGINT or when the target exits)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _function(frame: str) -> str:
    """``name (file:line)`` -> ``name (file)``, with site-packages and src/ paths cut."""
    match = _LOCATION.search(frame)
    if match is None:
        return frame
    return f"{frame[: match.start()]} ({match.group(1)})"


def summarise(path: Path, *, top: int = _TOP) -> dict[str, Any]:
    """Summarise a py-spy raw file: per-thread samples, top own and inclusive functions."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        calls = [_function(f) for f in frames if not f.startswith(("thread", "process"))]
        total += count
        threads[_thread_role(calls)] += count
        if calls:
            own[calls[-1]] += count
        for function in set(calls):
            inclusive[function] += count

    def shares(counter: Counter[str]) -> list[tuple[str, int, float]]:
        return [(name, n, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads": shares(threads) if total else [],
        "own": shares(own) if total else [],
        "inclusive": shares(inclusive) if total else [],
    }


def _thread_role(calls: list[str]) -> str:
    text = ";".join(calls)
    if "sqlite_writer" in text:
        return "sqlite writer process"
    if "Database._receive" in text or "Database._send" in text:
        return "sqlite writer channel threads"
    if "concurrent/futures/thread.py" in text or "_worker (" in text:
        return "sqlite reader thread"
    if "Runner.run" in text or "run_forever" in text or "run_until_complete" in text:
        return "event loop thread"
    return "other"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as plain text."""
    lines = [f"server profile: {summary['samples']} samples of running threads"]
    for title, key in (("by thread", "threads"), ("own time", "own"), ("inclusive", "inclusive")):
        lines.append(f"-- {title}")
        lines += [f"{share:5.1f}%  {name}" for name, _, share in summary[key]]
    return "\n".join(lines)
