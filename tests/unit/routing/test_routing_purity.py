"""realtime.routing must stay pure: stdlib (minus I/O), numpy, xxhash and realtime.bayeux only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import realtime.routing

PACKAGE_DIR = Path(realtime.routing.__file__).parent
FORBIDDEN = {
    "asyncio", "redis", "starlette", "websockets", "socket", "uvicorn", "uvloop", "httpx", "aiohttp",
    "selectors", "ssl", "http", "urllib", "subprocess", "threading", "multiprocessing", "os", "io",
    "importlib", "time", "logging",
}  # fmt: skip
THIRD_PARTY_ALLOWED = {"numpy", "xxhash"}
FIRST_PARTY_ALLOWED = ("realtime.routing", "realtime.bayeux")


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append("__import__()")
            continue
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN:
                found.append(name)
            elif top == "realtime":
                if not name.startswith(FIRST_PARTY_ALLOWED):
                    found.append(name)
            elif top not in THIRD_PARTY_ALLOWED and top not in sys.stdlib_module_names:
                found.append(name)
    return found


def test_the_checker_catches_io_imports() -> None:
    assert violations("import asyncio") == ["asyncio"]
    assert violations("from redis.asyncio import Redis") == ["redis.asyncio"]
    assert violations("import numpy, socket") == ["socket"]
    assert violations("from realtime.broker import base") == ["realtime.broker"]
    assert violations("import starlette.applications\nimport websockets") == [
        "starlette.applications",
        "websockets",
    ]
    assert violations("__import__('asyncio')") == ["__import__()"]
    assert violations("from __future__ import annotations\nimport numpy as np\nfrom . import wire") == []


def test_routing_modules_import_nothing_impure() -> None:
    modules = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(modules) >= 5
    for module in modules:
        assert violations(module.read_text()) == [], module.name
