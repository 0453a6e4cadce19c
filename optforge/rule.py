"""The update-rule contract: check and load rule sources, and run them as a torch.optim.Optimizer.

A rule is a small Python module (README.md, "The rule contract"):

    LR = 1e-3                                  # base learning rate (required)
    def init(p, ctx) -> dict                   # state for one tensor
    def update(p, g, state, ctx) -> Tensor     # the delta; the harness applies p += delta
    def eval_point(p, state, ctx) -> Tensor    # optional: weights to evaluate at

`check_rule` (`optforge.rule_check`) only parses (safe on untrusted text) and holds the source to the
rule contract and to `RULE_POLICY`, the static check the sandbox applies; `load_rule` (here) runs that
check, then executes (trusted text, or inside the sandbox). Its hyperparameters are in
`optforge.rule_hparams`; `RuleOptimizer` (`optforge.rule_optimizer`) is the one code path that the
evaluator, the seed tests and exports share. This module re-exports all of them.
"""

from __future__ import annotations

import linecache
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from optforge.roles import MATRIX_ROLES, ROLES, default_role, infer_roles, param_groups
from optforge.rule_check import RuleError, RuleProblem, check_rule
from optforge.rule_hparams import hparam_kind, hparam_problem, literal_constants, with_hparams_source
from optforge.rule_optimizer import Ctx, RuleOptimizer, check_lr
from optforge.sandbox.policy import Policy
from optforge.sandbox.rule_policy import RULE_POLICY

__all__ = [
    "MATRIX_ROLES", "ROLES", "Ctx", "Rule", "RuleError", "RuleOptimizer", "RuleProblem",
    "check_lr", "check_rule", "default_role", "hparam_kind", "hparam_problem", "infer_roles", "literal_constants",
    "load_rule", "param_groups", "rule_line", "with_hparams_source",
]


@dataclass(frozen=True)
class Rule:
    """A loaded rule: its source, hyperparameters and functions."""

    name: str
    source: str
    hparams: Mapping[str, Any]
    init: Callable[..., dict]
    update: Callable[..., torch.Tensor]
    eval_point: Callable[..., torch.Tensor] | None = None
    module: types.ModuleType | None = field(default=None, repr=False, compare=False)

    @property
    def lr(self) -> float:
        return float(self.hparams["LR"])

    def with_hparams(self, **overrides: Any) -> "Rule":
        """A new rule with some UPPER_CASE constants changed; unknown names and bad values raise."""
        for key, value in overrides.items():
            if key not in self.hparams:
                known = ", ".join(sorted(self.hparams))
                raise RuleError(f"rule '{self.name}' has no hyperparameter '{key}'; known: {known}")
            old = self.hparams[key]
            if isinstance(old, (int, float)) and not isinstance(old, bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise RuleError(f"hyperparameter {key} of rule '{self.name}' must be a number, got {value!r}")
            elif type(value) is not type(old):
                raise RuleError(
                    f"hyperparameter {key} of rule '{self.name}' must be a {type(old).__name__}, got {value!r}"
                )
            problem = hparam_problem(key, value)
            if problem:
                raise RuleError(f"bad hyperparameter for rule '{self.name}': {problem}")
        return load_rule(with_hparams_source(self.source, overrides), name=self.name)


def load_rule(source: str, name: str = "<candidate>", policy: Policy | None = RULE_POLICY) -> Rule:
    """Execute a rule source and return its `Rule`. Only for trusted sources or inside the sandbox.

    The source is first held to `check_rule` (contract and `policy`), so a rule the sandbox would
    refuse is refused here too, before any of it runs; RuleError names the lines. `policy=None`
    checks the contract only: for a job inside the sandbox, whose caller's policy `sandbox.run`
    has applied already (or was told not to, `Limits(static_check=False)`).
    """
    problems = check_rule(source, policy)
    if problems:
        raise RuleError(f"rule '{name}' is invalid: " + "; ".join(str(p) for p in problems))
    filename = f"<rule {name}>"
    # register the text so tracebacks through the rule show its lines
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(name.replace("<", "").replace(">", "") or "rule")
    module.__file__ = filename
    try:
        code = compile(source, filename, "exec")
        exec(code, module.__dict__)
    except Exception as e:  # noqa: BLE001 - any failure of untrusted module code is a RuleError
        line = rule_line(e, filename)
        where = f" at line {line}" if line else ""
        raise RuleError(f"rule '{name}' failed to load{where}: {type(e).__name__}: {e}; fix the module-level code") from e
    ns = module.__dict__
    if not isinstance(ns.get("LR"), (int, float)) or isinstance(ns.get("LR"), bool):
        raise RuleError(f"rule '{name}': LR must be a number, got {ns.get('LR')!r}")
    hparams = literal_constants(source)
    for key, value in hparams.items():
        problem = hparam_problem(key, value)
        if problem:
            raise RuleError(f"bad hyperparameter for rule '{name}': {problem}")
    for fn_name in ("init", "update", "eval_point"):
        if fn_name in ns and not callable(ns[fn_name]):
            raise RuleError(f"rule '{name}': '{fn_name}' must be a function")
    return Rule(
        name=name,
        source=source,
        hparams=hparams,
        init=ns["init"],
        update=ns["update"],
        eval_point=ns.get("eval_point"),
        module=module,
    )


def rule_line(exc: BaseException, filename: str | None = None) -> int | None:
    """The innermost traceback line that lies in a rule's source (or in `filename`)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if (filename and frame.filename == filename) or (not filename and frame.filename.startswith("<rule ")):
            line = frame.lineno
    return line
