"""Dependencies point downward: only aura_core/asyncio does I/O or reads the clock.

Modules outside ``aura_core/asyncio/`` never import asyncio, socket or selectors and never call
the clock (time.time/monotonic/perf_counter, datetime.now/utcnow); time and randomness arrive as
parameters.  The CLI, benchsuite and demo/relay front-ends may read the clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "aura_core"
IO_MODULES = {"asyncio", "socket", "selectors", "ssl"}
CLOCK_CALLS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"),
               ("time", "time_ns"), ("time", "monotonic_ns"), ("datetime", "now"),
               ("datetime", "utcnow"), ("date", "today")}
EXEMPT_PREFIXES = ("asyncio/", "benchsuite/", "cli.py", "__main__.py", "demo", "relay_cli",
                   "netlab/")  # netlab: the NAT lab harness (namespaces, subprocesses, agents)


def _sources():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if not rel.startswith(EXEMPT_PREFIXES):
            yield rel, path


def _violations(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in IO_MODULES:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.level == 0 and node.module.split(".")[0] in IO_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import")
            if node.module == "time" and any(a.name in {n for _, n in CLOCK_CALLS} for a in node.names):
                found.append(f"line {node.lineno}: from time import clock")
            if node.level >= 1 and node.module and node.module.split(".")[0] == "asyncio":
                found.append(f"line {node.lineno}: imports the asyncio layer")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in CLOCK_CALLS:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("rel,path", list(_sources()), ids=lambda v: v if isinstance(v, str) else "")
def test_module_is_sans_io(rel, path):
    assert _violations(ast.parse(path.read_text(), str(path))) == []


def test_checker_catches_violations():
    bad = ast.parse("import socket\nimport time\nx = time.monotonic()\nfrom .asyncio import sync\n")
    assert len(_violations(bad)) == 3


def test_compiled_modules_do_not_import_io():
    for pyx in PKG.glob("_*.pyx"):
        tree_text = pyx.read_text()
        for mod in IO_MODULES:
            assert f"import {mod}\n" not in tree_text and f"from {mod} " not in tree_text, pyx.name
