"""OPTO's trainable variables: the rule source as one code variable, and optionally each numeric
UPPER_CASE constant as its own variable; and the projection of a suggestion onto a checked rule.

In Trace (Cheng, Nie, Swaminathan, NeurIPS 2024, arXiv 2406.16218; `opto/optimizers/optoprime.py`),
a step proposes new values, `project()` maps each onto its parameter's feasible set, and `update()`
assigns them. Here the feasible set of the code is the static rule check
(`optforge.rule.check_rule` with `optforge.sandbox.RULE_POLICY`), and a constant's value is cast to
the constant's type (Trace casts with `type(node.data)(value)`; a value that does not cast exactly,
2.5 for an int, is refused here where Trace would truncate it) and held to the hyperparameter
conventions `load_rule` enforces (`optforge.rule.hparam_problem`: BETA in [0, 1), finite numbers).

A constant's new value is written into its assignment's literal only (`with_hparams_source`
locates it in the syntax tree), so the rest of the text stays byte-identical, and the change is
recorded as such (`ConstantChange`): lineage can say "constant BETA2 0.999 -> 0.995".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from optforge.rule import RuleError, check_rule, hparam_problem, literal_constants, with_hparams_source
from optforge.sandbox import RULE_POLICY

CODE = "rule"
"""The name of the code variable (the whole rule module)."""


def is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def variables_of(source: str, split_constants: bool = False) -> dict[str, Any]:
    """The variables of a rule: {"rule": source}, then with `split_constants` each numeric UPPER_CASE
    module-level literal constant in source order ({"LR": 0.001, "BETA2": 0.999}). Constants computed
    from others (`B = 1 - BETA`) follow their inputs and are not variables."""
    out: dict[str, Any] = {CODE: source}
    if split_constants:
        out.update({k: v for k, v in literal_constants(source).items() if is_numeric(v)})
    return out


def type_name(value: Any) -> str:
    """The OptoPrime type tag of a variable's value: "code", "int" or "float"."""
    return "code" if isinstance(value, str) else type(value).__name__


@dataclass(frozen=True)
class ConstantChange:
    """One constant changed by its own variable: its name and old and new values."""

    name: str
    old: int | float
    new: int | float

    def describe(self) -> str:
        return f"constant {self.name} {self.old!r} \u2192 {self.new!r}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class Applied:
    """A suggestion projected onto the rule: the new source and what changed, or the reason it is refused."""

    source: str | None
    code_changed: bool = False  # the code variable was rewritten (beyond any constant's own change)
    constants: tuple[ConstantChange, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.source is not None and not self.reason

    @property
    def changed(self) -> tuple[str, ...]:
        """The names of the variables that changed, code first."""
        return ((CODE,) if self.code_changed else ()) + tuple(c.name for c in self.constants)

    def describe(self) -> str:
        """For lineage: "code rewritten; constant BETA2 0.999 -> 0.995", or "no change"."""
        parts = (["code rewritten"] if self.code_changed else []) + [c.describe() for c in self.constants]
        return "; ".join(parts) or "no change"

    def record(self) -> dict[str, Any]:
        """The JSON-able change record a candidate's note keeps."""
        return {"code_changed": self.code_changed, "constants": [c.to_dict() for c in self.constants]}


def cast_constant(name: str, old: int | float, value: Any) -> tuple[int | float | None, str]:
    """`value` as the type of constant `name` (whose current value is `old`): (the value, "") or
    (None, the reason). Numbers and numeric strings cast; an int takes only whole numbers."""
    raw = value.strip() if isinstance(value, str) else value
    try:
        number = float(raw) if isinstance(raw, str) else raw
        if not is_numeric(number):
            raise TypeError
    except (TypeError, ValueError):
        return None, f"constant {name}: {value!r} is not a number (its value is the {type(old).__name__} {old!r})"
    if isinstance(old, int):
        if isinstance(raw, str):
            try:
                return int(raw), ""
            except ValueError:
                pass
        if not math.isfinite(number) or number != int(number):
            return None, f"constant {name} is an int ({old!r}); {value!r} is not a whole number"
        return int(number), ""
    return float(number), ""


def apply_suggestion(source: str, suggestion: Mapping[str, Any], split_constants: bool = False) -> Applied:
    """Project `suggestion` (variable name -> new value) onto the rule `source`.

    The code variable, if suggested, replaces the source; then each suggested constant is cast and
    written into its literal in that source. The result must pass the static rule check. Unknown
    variables, uncastable constants and a refused rule give an `Applied` with the reason.
    """
    known = variables_of(source, split_constants)
    unknown = [k for k in suggestion if k not in known]
    if unknown:
        return Applied(None, reason=f"suggestion for unknown variable(s) {', '.join(map(repr, unknown))}; "
                                    f"the variables are {', '.join(known)}")
    new_source = source
    if CODE in suggestion:
        code = suggestion[CODE]
        if not isinstance(code, str) or not code.strip():
            return Applied(None, reason=f"the value of variable '{CODE}' must be the whole rule module as text, got {code!r:.80}")
        new_source = code if code.endswith("\n") else code + "\n"
    values: dict[str, int | float] = {}
    for name, value in suggestion.items():
        if name == CODE:
            continue
        cast, why = cast_constant(name, known[name], value)
        if why:
            return Applied(None, reason=why)
        problem = hparam_problem(name, cast)
        if problem:
            return Applied(None, reason=f"constant {problem}")
        values[name] = cast
    problems = check_rule(new_source, RULE_POLICY)
    if problems:
        return Applied(None, reason="rule check failed: " + "; ".join(str(p) for p in problems[:5]))
    current = literal_constants(new_source)
    missing = [n for n in values if n not in current]
    if missing:
        return Applied(None, reason=f"constant(s) {', '.join(missing)} suggested, but the suggested code has no "
                                    f"'NAME = <number>' line for them; keep the line or drop the constant")
    changes = tuple(ConstantChange(n, current[n], v) for n, v in values.items()
                    if (current[n], type(current[n])) != (v, type(v)))
    try:
        written = with_hparams_source(new_source, {c.name: c.new for c in changes})
    except RuleError as e:
        return Applied(None, reason=str(e))
    code_changed = new_source != source
    return Applied(written, code_changed=code_changed, constants=changes)
