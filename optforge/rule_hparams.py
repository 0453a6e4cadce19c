"""A rule's hyperparameters: its literal UPPER_CASE constants, the naming conventions that bound their
values (shared with exported optimizers, whose constructors carry the same checks), and editing those
values in the source text."""

from __future__ import annotations

import ast
import math
from typing import Any, Mapping

from optforge.rule_check import RuleError


def _is_hparam_name(name: str) -> bool:
    return name.isupper() and not name.startswith("_")


def literal_constants(source: str) -> dict[str, Any]:
    """Top-level UPPER_CASE constants whose value is a literal: the rule's hyperparameters.

    Constants computed from others (`B = 1 - BETA`) are not hyperparameters: they follow their inputs.
    """
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        if not _is_hparam_name(name):
            continue
        try:
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(v, (bool, int, float, str, tuple)):
            out[name] = v
    return out


def hparam_kind(name: str) -> str | None:
    """The naming convention a hyperparameter follows: 'lr' (> 0), 'unit' ([0, 1)), 'nonneg' (>= 0)."""
    upper = name.upper()
    if upper == "LR" or upper.startswith("LR_"):
        return "lr"
    if upper.startswith(("BETA", "MOMENTUM")) or upper == "MU":
        return "unit"
    if upper.startswith(("EPS", "WD", "WEIGHT_DECAY")):
        return "nonneg"
    return None


def hparam_problem(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for hyperparameter `name`, by naming convention; None if fine.

    The conventions (`hparam_kind`, and finite numbers) are shared with exported optimizers, which
    carry the same checks into their constructors.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return f"{name}={value!r} must be a finite number"
    kind = hparam_kind(name)
    if kind == "lr" and value <= 0:
        return f"{name}={value!r} must be > 0"
    if kind == "unit" and not 0.0 <= value < 1.0:
        return f"{name}={value!r} must be in [0, 1)"
    if kind == "nonneg" and value < 0:
        return f"{name}={value!r} must be >= 0"
    return None


def with_hparams_source(source: str, overrides: Mapping[str, Any]) -> str:
    """Return `source` with the values of top-level `NAME = value` constants replaced.

    Editing the text (not the namespace) keeps derived constants consistent and keeps comments.
    """
    tree = ast.parse(source)
    spans: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            spans[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            spans[node.target.id] = node.value
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = source.encode("utf-8")
    edits = []
    for name, value in overrides.items():
        if name not in spans:
            raise RuleError(f"hyperparameter {name} is not a plain 'NAME = value' line in the source; cannot override it")
        node = spans[name]
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        edits.append((start, end, repr(value).encode("utf-8")))
    for start, end, text in sorted(edits, reverse=True):
        data = data[:start] + text + data[end:]
    return data.decode("utf-8")
