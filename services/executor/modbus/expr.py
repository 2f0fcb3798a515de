"""The profiles' expression language: safe arithmetic over named register and intent values.

Expressions are parsed with :mod:`ast` and only arithmetic, comparisons, ``a if c else b`` and
the functions ``min max abs round int coalesce`` are allowed; anything else is rejected.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Callable

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.RShift: operator.rshift,
    ast.LShift: operator.lshift,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


_FUNCS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "coalesce": _coalesce,
}


class Expr:
    """A safe arithmetic expression over named values. ``None`` operands give ``None`` (unknown stays unknown)."""

    def __init__(self, text: str | int | float):
        self.text = str(text)
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as err:
            raise ValueError(f"not a valid expression {self.text!r}: {err.msg}") from None
        self.names: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, bool)):
                raise ValueError(f"only numbers are allowed in {self.text!r}")
        elif isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            self._check(node.operand)
        elif isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
            self._check(node.left)
            for comp in node.comparators:
                self._check(comp)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.IfExp):
            self._check(node.test)
            self._check(node.body)
            self._check(node.orelse)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            if node.keywords:
                raise ValueError(f"keyword arguments are not allowed in {self.text!r}")
            for arg in node.args:
                self._check(arg)
        else:
            raise ValueError(f"unsupported syntax {type(node).__name__} in {self.text!r}")

    def evaluate(self, env: dict[str, Any]) -> Any:
        try:
            return self._eval(self._tree, env)
        except _Unknown:
            return None
        except (ZeroDivisionError, OverflowError, ValueError):
            return None

    def _eval(self, node: ast.AST, env: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise KeyError(f"{node.id!r} is not defined for expression {self.text!r}")
            return env[node.id]
        if isinstance(node, ast.Call):
            args = [self._eval(a, env) for a in node.args]
            name = node.func.id  # type: ignore[attr-defined]
            if name != "coalesce" and any(a is None for a in args):
                raise _Unknown
            return _FUNCS[name](*args)
        if isinstance(node, ast.IfExp):
            test = self._eval(node.test, env)
            if test is None:
                raise _Unknown
            return self._eval(node.body if test else node.orelse, env)
        if isinstance(node, ast.BoolOp):
            values = [self._eval(v, env) for v in node.values]
            if any(v is None for v in values):
                raise _Unknown
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, env)
            if value is None:
                raise _Unknown
            if isinstance(node.op, ast.USub):
                return -value
            if isinstance(node.op, ast.Not):
                return not value
            return value
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, env), self._eval(node.right, env)
            if left is None or right is None:
                raise _Unknown
            if isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.RShift, ast.LShift)):
                left, right = int(left), int(right)  # status bits: registers decode to floats
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, env)
                if left is None or right is None:
                    raise _Unknown
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(f"unsupported node in {self.text!r}")  # pragma: no cover - rejected by _check

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"


class _Unknown(Exception):
    """An operand was None (not readable): the whole expression is unknown."""
