"""The layering of DESIGN.md, checked on the source: the server cannot decrypt by construction.

Static (every import statement of every module, including imports inside functions) and at
run time (what importing every server module actually loads, in a fresh interpreter).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import kurir

SRC = Path(kurir.__file__).parent


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(SRC))] = names
    return found


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in _imports(package).items()
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("server", ("kurir.crypto", "kurir.client")),
        ("crypto", ("asyncio", "kurir.wire", "kurir.server", "kurir.client")),
        ("wire", ("kurir.crypto", "kurir.server", "kurir.client", "asyncio")),
        ("client", ("kurir.server",)),
    ],
)
def test_no_layer_imports_what_it_must_not(package: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(package, forbidden) == []


def test_loading_the_whole_server_loads_no_crypto_and_no_client() -> None:
    script = """
import importlib, json, pkgutil, sys
import kurir.server
for info in pkgutil.walk_packages(kurir.server.__path__, "kurir.server."):
    importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kurir."))))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "kurir.server.app" in loaded  # the walk did import the server
    assert [m for m in loaded if m.startswith(("kurir.crypto", "kurir.client"))] == []
