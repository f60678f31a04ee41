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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from kurir.bench.load import PhaseResult

__all__ = ["INSTALL_HINT", "have_plotting", "plot_results", "write_json"]

INSTALL_HINT: Final = (
    "plotting needs matplotlib, in kurir's optional 'bench' extra: "
    "pip install -e '.[bench]' (from the repository), or pass --no-plot"
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
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for index, server in enumerate(servers):
        rows = sorted(
            (r for r in results if r.server == server and r.latency is not None),
            key=lambda r: r.delivered_per_s,
        )
        if not rows:
            continue
        colour = f"C{index}"
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
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
