"""Task detection: does a rule compare what identifies a training set-up against a specific number?

A rule that tests `ctx.T == 5`, `ctx.lr == 0.003` or `p.shape[0] == 784` can recognise a set-up (the
smoke fingerprint's 5 steps, one task's layer width) and behave differently there. That is legal Python
and the static check lets it run; this pure function over the AST only flags it, so `show`, `report` and
an exported docstring can say so. Comparisons with 0, 1 and 2 (first step, vectors vs. matrices) are
ordinary optimizer code and are not flagged. The real defence is the held-out funnel: tasks, seeds and
horizons a rule never saw while it was searched for.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

_CTX_FIELDS = ("T", "t", "lr")
_NUMEL = ("numel", "nelement")
_ORDINARY = (0, 1, 2)
_CTX_PARAM = {"init": 1, "update": 3, "eval_point": 2}  # position of ctx in each contract function


@dataclass(frozen=True)
class Flag:
    """One suspicious comparison: its line and what it compares."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"

    def to_dict(self) -> dict:
        return {"line": self.line, "message": self.message}


def task_detection_flags(source: str) -> list[Flag]:
    """Comparisons of `ctx.T`, `ctx.t`, `ctx.lr`, a shape element or a numel against a numeric literal
    other than 0, 1 or 2 (directly, negated, or in a tuple/list/set for `in`), in line order.
    An unparseable source has no flags (the static check refuses it anyway)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return []
    ctx_names = {"ctx"}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in _CTX_PARAM:
            args = node.args.posonlyargs + node.args.args
            if len(args) > _CTX_PARAM[node.name]:
                ctx_names.add(args[_CTX_PARAM[node.name]].arg)
    flags: set[Flag] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for left, right in zip(operands, operands[1:]):
            for probe, other in ((left, right), (right, left)):
                what = _quantity(probe, ctx_names)
                odd = [v for v in _literals(other) if v not in _ORDINARY]
                if what and odd:
                    flags.add(Flag(node.lineno, f"compares {what} with {odd[0]!r}: the rule may detect the task or set-up"))
    return sorted(flags, key=lambda f: (f.line, f.message))


def _quantity(node: ast.AST, ctx_names: set[str]) -> str | None:
    """What set-up quantity `node` reads ('ctx.T', 'a shape element', 'numel'), or None."""
    # int(x) / float(x) / round(x) read the same quantity
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("int", "float", "round") and node.args:
        node = node.args[0]
    if isinstance(node, ast.Attribute) and node.attr in _CTX_FIELDS:
        if isinstance(node.value, ast.Name) and node.value.id in ctx_names:
            return f"ctx.{node.attr}"
    if isinstance(node, ast.Subscript):
        base = node.value
        if isinstance(base, ast.Attribute) and base.attr == "shape":
            return "a shape element"
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute) and base.func.attr == "size" and not base.args:
            return "a shape element"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "size" and node.args:
            return "a shape element"
        if node.func.attr in _NUMEL:
            return "numel"
    return None


def _literals(node: ast.AST) -> list[float]:
    """The numeric literal(s) `node` is: a number, a negated number, or a tuple/list/set of them."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [v for e in node.elts for v in _literals(e)]
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return [sign * node.value]
    return []
