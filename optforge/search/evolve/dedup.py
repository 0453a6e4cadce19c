"""Duplicate detection before evaluation: exact content hash and a normalised source hash that
ignores comments, docstrings, whitespace and the names of variables, arguments and helpers.
Functional duplicates (different code, same numbers) are not detected: a numeric fingerprint measured
in the sandbox could be gamed, so the engine lends a result only between programs with the same
syntax tree (optforge/program_identity.py)."""

from __future__ import annotations

import ast
import builtins
import hashlib
import re

_KEEP = {"torch", "math", "init", "update", "eval_point", "LR", "p", "g", "state", "ctx"} | set(dir(builtins))


class _Renamer(ast.NodeTransformer):
    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        if name in _KEEP:
            return name
        if name not in self.names:
            self.names[name] = f"v{len(self.names)}"
        return self.names[name]

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._new(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        node.returns = None
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node


def normalise(source: str) -> str:
    """Canonical text of a rule: parsed and unparsed (no comments/whitespace), docstrings dropped,
    local names renamed in order of appearance. Unparseable text is only whitespace-collapsed."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return re.sub(r"\s+", " ", re.sub(r"#[^\n]*", "", source)).strip()
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None), ast.Constant):
        tree.body = tree.body[1:]
    tree = _Renamer().visit(tree)
    return ast.unparse(tree)


def normalised_hash(source: str) -> str:
    return hashlib.sha256(normalise(source).encode("utf-8")).hexdigest()[:16]


def tokens(source: str) -> set[str]:
    """Identifier and number tokens of the normalised source, for code novelty (Jaccard)."""
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*|\d+\.?\d*(?:e-?\d+)?", normalise(source)))


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
