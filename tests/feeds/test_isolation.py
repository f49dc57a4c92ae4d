"""feeds is a library of its own: it must never import the push server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import feeds

FEEDS_DIR = Path(feeds.__file__).parent


def test_no_source_file_imports_realtime() -> None:
    offenders = []
    for path in FEEDS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "realtime" or n.startswith("realtime.")]
    assert offenders == []


def test_importing_every_module_loads_no_realtime() -> None:
    modules = sorted(
        "feeds." + ".".join(p.relative_to(FEEDS_DIR).with_suffix("").parts)
        for p in FEEDS_DIR.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m == 'realtime' or m.startswith('realtime.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
