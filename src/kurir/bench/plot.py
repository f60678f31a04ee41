"""Plots and result files of benchmark runs: throughput against latency, JSON.

This module owns turning :class:`~kurir.bench.load.PhaseResult` rows into a PNG (delivered
messages per second on x, send-to-receipt latency p50 and p99 on a log y axis, one line per
server) and a JSON document. matplotlib is optional (the ``bench`` extra): :func:`have_plotting`
says whether it is installed and :data:`INSTALL_HINT` how to install it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from kurir.bench.load import LatencySummary, PhaseResult

__all__ = [
    "INSTALL_HINT",
    "have_plotting",
    "main",
    "plot_results",
    "results_from_json",
    "write_json",
]

INSTALL_HINT: Final = (
    "plotting needs matplotlib, in kurir's optional 'bench' extra: "
    "pip install -c constraints.txt -e '.[bench]' (from the repository), or pass --no-plot"
)


def have_plotting() -> bool:
    """Whether matplotlib is importable."""
    return importlib.util.find_spec("matplotlib") is not None


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` (dataclasses allowed inside) as indented JSON."""

    def default(value: object) -> object:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=default) + "\n", encoding="utf-8")


def plot_results(path: Path, results: Sequence[PhaseResult], *, title: str) -> None:
    """Throughput against latency, one line per server, p50 solid and p99 dashed.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (see :data:`INSTALL_HINT`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = list(dict.fromkeys(r.server for r in results))
    fig, ax = plt.subplots(figsize=(8, 5.6), dpi=110)
    for index, server in enumerate(servers):
        colour = f"C{index}"
        # closed-loop "max" phases are a different experiment from the open-loop fixed rates:
        # drawn as separate stars, not joined to the fixed-rate curve
        closed = [r for r in results if r.server == server and r.target_rate is None]
        for r in closed:
            if r.latency is not None:
                ax.plot([r.delivered_per_s], [r.latency.p50_ms], "*", color=colour, ms=12)
                ax.plot(
                    [r.delivered_per_s], [r.latency.p99_ms], "*", color=colour, ms=12, mfc="none"
                )
        rows = sorted(
            (
                r
                for r in results
                if r.server == server and r.latency is not None and r.target_rate is not None
            ),
            key=lambda r: r.delivered_per_s,
        )
        if not rows:
            continue
        xs = [r.delivered_per_s for r in rows]
        ax.plot(
            xs,
            [r.latency.p50_ms for r in rows if r.latency],
            "o-",
            color=colour,
            label=f"{server} p50",
        )
        ax.plot(
            xs,
            [r.latency.p99_ms for r in rows if r.latency],
            "s--",
            color=colour,
            label=f"{server} p99",
        )
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("log")
    ax.set_xlabel("delivered messages per second")
    ax.set_ylabel("latency send -> receipt (ms)")
    ax.set_title(title, fontsize=10)
    ax.plot([], [], "*", color="grey", ms=12, label="max, closed loop (filled p50, open p99)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def results_from_json(path: Path) -> list[PhaseResult]:
    """The phases of a results file written by ``kurir bench`` or ``bench/synapse_compare.py``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    rows: list[PhaseResult] = []
    for phase in document.get("phases", []):
        latency = phase.pop("latency")
        rows.append(
            PhaseResult(**phase, latency=None if latency is None else LatencySummary(**latency))
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kurir.bench.plot RESULTS.json OUT.png [TITLE]``: plot a results file again."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print("usage: python -m kurir.bench.plot RESULTS.json OUT.png [TITLE]", file=sys.stderr)
        return 2
    title = args[2] if len(args) == 3 else "throughput against latency"
    plot_results(Path(args[1]), results_from_json(Path(args[0])), title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
