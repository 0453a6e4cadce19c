"""The static check of a rule source: parse only, run nothing. Safe on untrusted text."""

from __future__ import annotations

import ast
from dataclasses import dataclass

ALLOWED_IMPORTS = ("torch", "math")
SIGNATURES = {"init": ("p", "ctx"), "update": ("p", "g", "state", "ctx"), "eval_point": ("p", "state", "ctx")}
_REQUIRED = ("init", "update")
_FORBIDDEN_CALLS = ("open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "input", "breakpoint")


class RuleError(ValueError):
    """A rule source or hyperparameter is unusable. The message says where and what to do."""


@dataclass(frozen=True)
class RuleProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message




def check_rule(source: str) -> list[RuleProblem]:
    """Structural problems of a rule source, found by parsing only. An empty list means loadable."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [RuleProblem(e.lineno or 0, f"syntax error: {e.msg}; fix the Python syntax")]
    problems: list[RuleProblem] = []
    defs: dict[str, ast.FunctionDef] = {}
    has_lr = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defs[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "LR" for t in targets):
                has_lr = True
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in ALLOWED_IMPORTS:
                    problems.append(_import_problem(node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] not in ALLOWED_IMPORTS or node.level:
                problems.append(_import_problem(node.lineno, node.module or "." * node.level))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _FORBIDDEN_CALLS:
                problems.append(
                    RuleProblem(node.lineno, f"call to '{node.func.id}' is not allowed in a rule; compute with torch and math only")
                )
        elif isinstance(node, ast.AsyncFunctionDef):
            problems.append(RuleProblem(node.lineno, "async functions are not allowed; use plain 'def'"))
    if not has_lr:
        problems.append(RuleProblem(0, "missing module constant 'LR'; add e.g. 'LR = 1e-3' (the rule's base learning rate)"))
    for name in _REQUIRED:
        if name not in defs:
            want = ", ".join(SIGNATURES[name])
            problems.append(RuleProblem(0, f"missing function '{name}'; define 'def {name}({want}):'"))
    for name, fn in defs.items():
        if name in SIGNATURES:
            got = tuple(a.arg for a in fn.args.posonlyargs + fn.args.args)
            want = SIGNATURES[name]
            if len(got) != len(want) or fn.args.vararg or fn.args.kwonlyargs or fn.args.kwarg:
                problems.append(
                    RuleProblem(fn.lineno, f"'{name}' must take exactly ({', '.join(want)}), got ({', '.join(got)})")
                )
    return problems


def _import_problem(line: int, name: str) -> RuleProblem:
    return RuleProblem(line, f"import of '{name}' is not allowed; a rule may import only torch and math")


