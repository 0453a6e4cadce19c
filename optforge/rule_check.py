"""The static check of a rule source: parse only, run nothing. Safe on untrusted text.

One entry point, `check_rule`, for every place a rule is accepted (the sandbox's caller, `load_rule`,
`optforge eval`, `optforge export`, the LLM reply parser): the rule contract (an `LR` constant,
`init` and `update` with their signatures) plus the static-check `Policy` (`RULE_POLICY` unless the
caller brings another), so no path holds a rule to a lighter check than the sandbox does.
"""

from __future__ import annotations

import ast

from optforge.rule_flags import Flag, task_detection_flags
from optforge.sandbox.policy import Policy, Violation, check_source, parse_source
from optforge.sandbox.rule_policy import RULE_POLICY

SIGNATURES = {"init": ("p", "ctx"), "update": ("p", "g", "state", "ctx"), "eval_point": ("p", "state", "ctx")}
_REQUIRED = ("init", "update")

RuleProblem = Violation
"""A refusal of a rule source: `line` (0 when it concerns the whole source) and `message`."""

__all__ = ["Flag", "RuleError", "RuleProblem", "SIGNATURES", "check_rule", "task_detection_flags"]


class RuleError(ValueError):
    """A rule source or hyperparameter is unusable. The message says where and what to do."""


def check_rule(source: str, policy: Policy | None = RULE_POLICY) -> list[RuleProblem]:
    """Every problem of a rule source, found by parsing only: contract first, then `policy`
    (None checks the contract alone). An empty list means it may be loaded and run."""
    tree, error = parse_source(source)
    if error is not None:
        return [error]
    problems = _contract_problems(tree)
    if policy is not None:
        problems += check_source(source, policy)
    return problems


def _contract_problems(tree: ast.Module) -> list[RuleProblem]:
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
