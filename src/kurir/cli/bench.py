"""``kurir bench``: load-test a real ``kurir serve`` process and report what it carries.

This module owns the command line of the load generator and its terminal output (a rich
progress bar, a result table); the work is done by :mod:`kurir.bench`. Modes: the default
load run (raw devices, one phase per ``--rate``), ``--idle`` (memory per idle connected
device) and ``--sdk`` (real SDK clients doing real encryption). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kurir.bench.load import PhaseResult

__all__ = ["HELP", "add_parser", "run"]

HELP: Final = "load-test a kurir server (a separate `kurir serve` process) and report"


def _rate(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("a rate is > 0 or 'max'")
    return value


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``bench``'s arguments."""
    parser.add_argument("--devices", type=int, default=100, help="simulated devices (100)")
    parser.add_argument("--workers", type=int, default=1, help="generator processes (1)")
    parser.add_argument(
        "--rate",
        type=_rate,
        action="append",
        help="offered msgs/s, or 'max' (as fast as accepted); repeat for one phase each "
        "(default: max)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="counted s per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted s per phase")
    parser.add_argument("--window", type=int, default=1, help="sends in flight per device (max)")
    parser.add_argument("--payload", type=int, default=200, help="message body bytes (200)")
    parser.add_argument("--data-dir", type=Path, default=None, help="server data directory")
    parser.add_argument(
        "--database",
        default=None,
        metavar="DSN",
        help="postgresql://... server: run on a fresh database created there (dropped after) "
        "instead of SQLite",
    )
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="redis://... shared by the nodes; only the run's own keys are deleted after",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="kurir serve processes sharing --database and --redis; devices connect "
        "round-robin (1; more needs both)",
    )
    parser.add_argument(
        "--pin-cpus",
        action="store_true",
        help="start the server with --pin-cpus (its event loop and SQLite writer on two CPUs)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot")
    parser.add_argument("--no-plot", action="store_true", help="never plot")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="record the server with py-spy during the phases (collapsed stacks) and summarise",
    )
    parser.add_argument(
        "--callgrind",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the server under valgrind's callgrind (files in DIR) and report the "
        "instructions it executes per delivered message: comparable across runs on a noisy "
        "machine, about 50x slower",
    )
    parser.add_argument(
        "--trace-memory",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --idle: tracemalloc snapshots of the server (FILE.1, FILE.2) and a summary",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--idle", action="store_true", help="memory per idle connected device")
    mode.add_argument("--sdk", action="store_true", help="devices are real SDK clients")


def _console() -> Any:
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=160)  # a log file: the whole table, unwrapped
    return console


def _progress_bar(console: Any) -> tuple[Any, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.completed:>8.0f}/{task.total:<8.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("starting", total=1)
    return bar, task


def _table(results: list[PhaseResult]) -> Any:
    from rich.table import Table

    table = Table(title="kurir bench")
    for name in (
        "server",
        "offered",
        "accepted/s",
        "delivered/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "server CPU %",
        "server RSS MiB",
        "generator CPU %",
        "load avg",
    ):
        table.add_column(name, justify="right")
    for r in results:
        lat = r.latency
        table.add_row(
            r.server,
            "max" if r.target_rate is None else f"{r.target_rate:,.0f}",
            f"{r.accepted_per_s:,.0f}",
            f"{r.delivered_per_s:,.0f}",
            "-" if lat is None else f"{lat.p50_ms:.1f}",
            "-" if lat is None else f"{lat.p99_ms:.1f}",
            "-" if lat is None else f"{lat.p999_ms:.1f}",
            "-" if lat is None else f"{lat.max_ms:.1f}",
            str(sum(r.errors.values()) + r.undelivered),
            f"{r.server_cpu_pct:.0f}",
            f"{r.server_rss_mib:.0f}",
            f"{r.generator_cpu_pct:.0f}",
            f"{r.load_avg_1m:.1f}",
        )
    return table


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; return the exit status (1 if any error was counted)."""
    from kurir.bench.load import (
        LoadOptions,
        allocation_growth,
        machine_info,
        run_idle,
        run_load,
    )
    from kurir.bench.plot import INSTALL_HINT, have_plotting, plot_results, write_json
    from kurir.bench.profile import ServerProfiler, format_summary, summarise

    if args.nodes < 1 or (args.nodes > 1 and (args.database is None or args.redis is None)):
        print("kurir bench: --nodes > 1 needs --database and --redis", file=sys.stderr)
        return 2
    if (args.database or args.redis or args.nodes > 1) and (args.idle or args.sdk):
        print("kurir bench: --database/--redis/--nodes apply to the load run only", file=sys.stderr)
        return 2
    if args.pin_cpus and (args.database or args.idle or args.sdk):
        print("kurir bench: --pin-cpus applies to the load run on SQLite only", file=sys.stderr)
        return 2
    if args.callgrind is not None:
        from kurir.bench.instructions import callgrind_available

        if args.database or args.nodes > 1 or args.idle or args.sdk or args.pin_cpus:
            print("kurir bench: --callgrind applies to the load run on SQLite", file=sys.stderr)
            return 2
        if not callgrind_available():
            print("kurir bench: --callgrind needs valgrind (Debian: valgrind)", file=sys.stderr)
            return 2
        args.callgrind.mkdir(parents=True, exist_ok=True)
    if args.plot is not None and not args.no_plot and not have_plotting():
        print(f"kurir bench: {INSTALL_HINT}", file=sys.stderr)
        return 2
    console = _console()
    bar, task = _progress_bar(console)

    def progress(what: str, done: float, total: float) -> None:
        bar.update(task, description=what, completed=done, total=max(total, 1))

    document: dict[str, Any] = {
        "command": ["kurir", *sys.argv[1:]],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    started = time.monotonic()
    with bar:
        if args.idle:
            idle = run_idle(
                args.devices,
                workers=args.workers,
                data_dir=args.data_dir,
                progress=progress,
                trace_to=args.trace_memory,
            )
            document["idle"] = idle
            if args.trace_memory is not None:
                document["idle_allocations_per_device"] = allocation_growth(
                    args.trace_memory, idle.connected
                )
        elif args.sdk:
            from kurir.bench.sdk import run_sdk

            results = run_sdk(
                args.devices,
                rates=tuple(args.rate or [None]),
                duration_s=args.duration,
                warmup_s=args.warmup,
                workers=args.workers,
                progress=progress,
            )
            document["phases"] = results
        else:
            options = LoadOptions(
                devices=args.devices,
                workers=args.workers,
                rates=tuple(args.rate or [None]),
                duration_s=args.duration,
                warmup_s=args.warmup,
                window=args.window,
                payload_bytes=args.payload,
                data_dir=args.data_dir,
                database=args.database,
                redis=args.redis,
                nodes=args.nodes,
                pin_cpus=args.pin_cpus,
                callgrind=args.callgrind,
            )
            profiler = None if args.profile is None else ServerProfiler(args.profile)
            results = run_load(
                options,
                progress=progress,
                server_ready=None if profiler is None else profiler.start,
                on_phase=lambda r: console.log(
                    f"phase {'max' if r.target_rate is None else r.target_rate}: "
                    f"{r.delivered_per_s:,.0f} delivered/s"
                ),
            )
            document["phases"] = results
            if profiler is not None:
                profiler.stop()
                document["profile"] = summarise(args.profile)
    document["elapsed_s"] = round(time.monotonic() - started, 1)
    failed = False
    if "idle" in document:
        idle = document["idle"]
        console.print(
            f"idle: {idle.connected:,} of {idle.devices:,} devices connected; server RSS "
            f"{idle.rss_before_mib:.1f} -> {idle.rss_after_mib:.1f} MiB = "
            f"{idle.bytes_per_device / 1024:.1f} KiB per device"
        )
        failed = idle.connected != idle.devices
        for where, size in document.get("idle_allocations_per_device", []):
            console.print(f"{size:10.0f} B/device  {where}")
    else:
        phases: list[PhaseResult] = document["phases"]
        console.print(_table(phases))
        for r in phases:
            if r.instructions_per_message is not None:
                counts = ", ".join(f"{k} {v:,.0f}" for k, v in r.instructions_per_message.items())
                rate = "max" if r.target_rate is None else f"{r.target_rate:,.0f}/s"
                console.print(f"instructions per delivered message at {rate}: {counts}")
        failed = any(r.errors or r.undelivered for r in phases)
        if args.plot is not None and not args.no_plot:
            plot_results(args.plot, phases, title="kurir: throughput against latency")
            console.print(f"plot: {args.plot}")
    if "profile" in document:
        console.print(format_summary(document["profile"]))
    if args.json is not None:
        write_json(args.json, document)
        console.print(f"results: {args.json}")
    return 1 if failed else 0
