"""realtime/bayeux is the sans-I/O core: it must not import asyncio or any I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "realtime" / "bayeux"
FORBIDDEN = {
    "asyncio",
    "socket",
    "selectors",
    "starlette",
    "websockets",
    "redis",
    "uvicorn",
    "uvloop",
    "httptools",
    "http",
    "urllib3",
    "httpx",
    "threading",
    "time",
    "subprocess",
    "os",
}
ALLOWED_PACKAGES = {"realtime"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_does_no_io(module: Path) -> None:
    bad = imported_roots(module) & FORBIDDEN
    assert not bad, f"{module.name} imports {sorted(bad)}"


def test_core_imports_only_core_from_the_package() -> None:
    for module in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("realtime."):
                assert node.module.startswith("realtime.bayeux"), f"{module.name} imports {node.module}"


def test_the_check_catches_an_io_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nfrom redis import asyncio as r\n")
    assert imported_roots(sample) & FORBIDDEN == {"asyncio", "redis"}
