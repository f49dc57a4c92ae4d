"""Ranking expressions: a small, safe arithmetic language over an activity's numeric fields.

A feed group declares ``ranking = {"popular": "likes * 2 + log(1 + comments) - age_h / 24"}``.
Names are the activity's top-level numeric custom fields (missing or non-numeric ones are 0) and
``age_s`` / ``age_h`` (seconds / hours since the activity's time at read time).  Allowed: numbers,
``+ - * / ** %``, unary minus, and the functions in ``FUNCTIONS``.  Expressions are parsed and
checked once, when the group is loaded, never ``eval``-ed.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

from feeds.activity import Activity
from feeds.errors import RankingError

FUNCTIONS: dict[str, Callable[..., float]] = {
    "log": lambda x: math.log(x) if x > 0 else 0.0,
    "log10": lambda x: math.log10(x) if x > 0 else 0.0,
    "sqrt": lambda x: math.sqrt(x) if x > 0 else 0.0,
    "exp": lambda x: math.exp(min(x, 700.0)),
    "abs": abs,
    "min": min,
    "max": max,
}
_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else 0.0,
    ast.Mod: lambda a, b: a % b if b else 0.0,
    ast.Pow: lambda a, b: float(a) ** min(b, 64.0) if a or b > 0 else 0.0,
}


class Ranking:
    def __init__(self, expression: str) -> None:
        try:
            self._tree = ast.parse(expression, mode="eval").body
        except SyntaxError as exc:
            raise RankingError(f"invalid ranking expression {expression!r}: {exc.msg}") from None
        self._check(self._tree)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self._check(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            if node.keywords:
                raise RankingError("ranking functions take positional arguments only")
            for arg in node.args:
                self._check(arg)
        elif isinstance(node, ast.Name) or (
            isinstance(node, ast.Constant) and isinstance(node.value, int | float)
        ):
            return
        else:
            raise RankingError(f"unsupported ranking syntax: {ast.dump(node)[:60]}")

    def score(self, activity: Activity, now_us: int) -> float:
        age_s = (now_us - activity.time_us) / 1_000_000
        names: dict[str, float] = {"age_s": age_s, "age_h": age_s / 3600}
        for key, value in activity.extra.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                names[key] = float(value)
        try:
            return float(_eval(self._tree, names))
        except (OverflowError, ValueError, TypeError):
            return 0.0


def _eval(node: ast.AST, names: dict[str, float]) -> Any:
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, names)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](*(_eval(a, names) for a in node.args))
    if isinstance(node, ast.Name):
        return names.get(node.id, 0.0)
    assert isinstance(node, ast.Constant)
    return node.value
