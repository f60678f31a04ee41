"""The server cannot decrypt: kurir.server never imports kurir.crypto or kurir.client.

Checked two ways: statically (every import statement under src/kurir/server and
src/kurir/wire, relative imports resolved) and dynamically (importing every server module in
a fresh interpreter loads neither package).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kurir

SRC = Path(kurir.__file__).parent


def _imports(source: str, package: str) -> list[str]:
    """Every module named by an import statement in ``source`` (a module of ``package``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(layer: str, name: str) -> bool:
    if layer == "server":
        return name.startswith(("kurir.crypto", "kurir.client", "kurir.cli")) or name in {
            "kurir.crypto",
            "kurir.client",
        }
    # wire imports only the standard library, its codec libraries and itself
    return name.startswith("kurir.") and not name.startswith("kurir.wire")


def _violations(layer: str) -> list[str]:
    bad: list[str] = []
    for path in sorted((SRC / layer).rglob("*.py")):
        package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
        for name in _imports(path.read_text(encoding="utf-8"), package):
            if _forbidden(layer, name):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    return bad


def test_server_imports_neither_crypto_nor_client() -> None:
    assert len(list((SRC / "server").rglob("*.py"))) > 10
    assert _violations("server") == []


def test_wire_imports_only_itself() -> None:
    assert _violations("wire") == []


def test_the_checker_sees_absolute_and_relative_imports() -> None:
    source = "import kurir.client.store\nfrom ..crypto import session\nfrom . import http\n"
    names = _imports(source, "kurir.server")
    assert "kurir.crypto.session" in names
    assert [n for n in names if _forbidden("server", n)] == [
        "kurir.client.store",
        "kurir.crypto",
        "kurir.crypto.session",
    ]
    assert _forbidden("wire", "kurir.server.types")
    assert not _forbidden("wire", "kurir.wire.errors")


def test_importing_the_server_loads_no_crypto_or_client() -> None:
    # Every module is tried; one that fails to import (e.g. an optional engine whose driver
    # is missing) cannot load anything either, and the static test above still covers it.
    code = (
        "import sys, pkgutil, importlib, kurir.server\n"
        "for m in pkgutil.walk_packages(kurir.server.__path__, 'kurir.server.'):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except Exception:\n"
        "        pass\n"
        "import kurir.cli.serve\n"
        "need = ['kurir.server.app', 'kurir.server.ws', 'kurir.server.http',\n"
        "        'kurir.server.testing']\n"
        "assert all(n in sys.modules for n in need), 'the core server did not import'\n"
        "bad = sorted(n for n in sys.modules if n.startswith(('kurir.crypto', 'kurir.client')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
