"""`symbolic`: Lion-style symbolic program search (Chen et al. 2023, arXiv 2302.06675), no LLM needed.

Regularized evolution over flat programs of a fixed function library, warm-started from hand-written
seeds, with abstract execution, redundancy removal, a fingerprint-keyed fitness cache, restarts and a
simplification stage. Modules: program (form, render, parse), library, abstract, interpret (trusted
interpreter, fingerprint), hashing, mutate, warmstarts, evolution (the Strategy), simplify.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from optforge.search.context import StrategyContext
from optforge.search.symbolic.evolution import SymbolicSearch
from optforge.search.symbolic.params import SymbolicParams
from optforge.search.symbolic.program import Program, parse, render

__all__ = ["SymbolicParams", "SymbolicSearch", "Program", "from_config", "parse", "render"]

_TUPLES = ("warm_start",)


def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> SymbolicSearch:
    """Build the strategy from the config's `strategy` mapping (minus `name`); unknown keys raise."""
    fields = {f.name: f for f in dataclasses.fields(SymbolicParams)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(
            f"strategy.{unknown[0]}: unknown key for strategy 'symbolic'; known keys: {', '.join(fields)}"
        )
    kw: dict[str, Any] = {}
    for key, value in params.items():
        if key in _TUPLES:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"strategy.{key}={value!r} must be a list of seed names")
            value = tuple(str(v) for v in value)
        elif key in ("hparam_only",):
            if not isinstance(value, bool):
                raise ValueError(f"strategy.{key}={value!r} must be true or false")
        elif key in ("simplify_tolerance", "const_prob"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"strategy.{key}={value!r} must be a number")
            value = float(value)
        else:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"strategy.{key}={value!r} must be an integer")
            if value is None and key != "phase_evaluations":
                raise ValueError(f"strategy.{key} must be an integer, got null")
        kw[key] = value
    p = SymbolicParams(**kw)
    return SymbolicSearch(p, np.random.default_rng(ctx.seed), seed=ctx.seed)
