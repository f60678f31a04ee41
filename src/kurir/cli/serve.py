"""``kurir serve``: run a kurir server.

This module owns the command line of the server (data directory, interface, port, app
catalogue) and the process-wide logging setup: INFO for kurir, WARNING for uvicorn (its INFO
lines carry client addresses), no access log. The server modules are imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kurir.server.config import ServerConfig

__all__ = ["HELP", "add_parser", "run"]

HELP: Final = "run a kurir server"
_log = logging.getLogger("kurir.cli.serve")
_GC_YOUNG_THRESHOLD: Final = 100_000


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s arguments."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="directory of the SQLite database (default: ./data)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080, help="TCP port, 0 = any free (default: 8080)"
    )
    parser.add_argument("--apps", type=Path, default=None, help="app catalogue TOML file")
    parser.add_argument(
        "--database",
        default=os.environ.get("KURIR_DATABASE") or None,
        metavar="URL",
        help="postgresql://... to store everything in PostgreSQL instead of SQLite in"
        " --data-dir (default: $KURIR_DATABASE; put the password in PGPASSWORD, not the URL)",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("KURIR_REDIS") or None,
        metavar="URL",
        help="redis://host:6379 to run as one of several nodes sharing --database"
        " (default: $KURIR_REDIS; none: single node)",
    )
    parser.add_argument(
        "--node-id", default=None, help="this node's id among nodes sharing Redis (default: random)"
    )
    parser.add_argument(
        "--pin-cpus",
        action="store_true",
        help="on a machine dedicated to kurir: run the event loop on one CPU and the SQLite"
        " writer process on another, so that the two busiest threads never share a core",
    )
    parser.add_argument(
        "--default-reachability",
        choices=("everyone", "contacts", "nobody"),
        default=os.environ.get("KURIR_DEFAULT_REACHABILITY") or "contacts",
        help="who from other apps may reach an account that never chose (default: contacts)",
    )


def _pin_cpus() -> frozenset[int]:
    """Keep this thread (the event loop's, and every thread it starts) on the first CPU this
    process may use; return the second, for the SQLite writer process.

    Raises:
        ConfigError: Fewer than two CPUs are available to this process.
    """
    from kurir.server.config import ConfigError

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise ConfigError(f"--pin-cpus needs two CPUs; this process may use {len(cpus)}")
    os.sched_setaffinity(0, {cpus[0]})  # 0: the calling thread, on Linux
    return frozenset({cpus[1]})


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


async def _serve(config: ServerConfig) -> None:
    from kurir.server.app import create_app
    from kurir.server.run import bind_socket, make_server
    from kurir.server.types import SystemClock, SystemRng

    sock = bind_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    app = create_app(config, clock=SystemClock(), rng=SystemRng())
    server = make_server(app, host=config.host, port=int(port))
    shown = f"[{host}]" if ":" in host else host
    _log.info("kurir listening on http://%s:%d", shown, port)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


def _tune_gc() -> None:
    """Keep the cyclic garbage collector out of the message path's latency.

    The server allocates many short-lived objects per message (frames, dicts, envelopes) and
    few cycles. ``gc.freeze`` moves everything allocated at start-up (modules, the app) out of
    every later collection, and a young-generation threshold of 100,000 allocations (700 by
    default) makes collections rare. Under saturation this halved p99 and raised throughput
    about 15% (docs/performance.md, "Garbage collector").
    """
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, 50, 100)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (``uvicorn[standard]``), else asyncio's."""
    _tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def run(args: argparse.Namespace) -> int:
    """Run the server until interrupted; return the exit status."""
    from kurir.server.app import DB_FILE
    from kurir.server.config import ConfigError, ServerConfig, load_apps
    from kurir.server.storage.errors import SchemaTooNew, StorageError
    from kurir.server.storage.sqlite_db import check_not_in_use, check_schema

    _setup_logging()
    try:
        if args.pin_cpus and args.database is not None:
            raise ConfigError("--pin-cpus is for the SQLite engine, not with --database")
        apps = load_apps(args.apps)
        config = ServerConfig(
            apps=apps,
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            database=args.database,
            redis=args.redis,
            node_id=args.node_id,
            metrics_token=os.environ.get("KURIR_METRICS_TOKEN") or None,
            default_reachability=args.default_reachability,
            writer_cpus=_pin_cpus() if args.pin_cpus else None,
        )
        if args.database is None:
            check_schema(args.data_dir / DB_FILE)
            check_not_in_use(args.data_dir / DB_FILE)
        else:  # refuse early, before listening, a schema newer than this kurir
            from kurir.server.storage.postgres_db import inspect_database

            asyncio.run(inspect_database(args.database))
    except (ConfigError, OSError, SchemaTooNew, StorageError) as exc:
        print(f"kurir serve: {exc}", file=sys.stderr)
        return 2
    try:
        _run_loop(_serve(config))
    except OSError as exc:
        print(f"kurir serve: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
