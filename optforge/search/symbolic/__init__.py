"""`symbolic`: Lion-style symbolic program search (Chen et al. 2023, arXiv 2302.06675), no LLM needed.

Regularized evolution over flat programs of a fixed function library, warm-started from hand-written
seeds, with abstract execution, redundancy removal, a fingerprint-keyed fitness cache, restarts and a
simplification stage. Modules: program (form, render, parse), library, abstract, interpret (trusted
interpreter, fingerprint), hashing, mutate, warmstarts, evolution (the Strategy), simplify.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from optforge.search.context import StrategyContext
from optforge.search.symbolic.evolution import SymbolicSearch
from optforge.search.symbolic.params import SymbolicParams
from optforge.search.symbolic.program import Program, parse, render

__all__ = ["SymbolicParams", "SymbolicSearch", "Program", "from_config", "parse", "render"]


def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> SymbolicSearch:
    """Build the strategy from the config's `strategy` mapping (minus `name`); unknown keys raise."""
    p = SymbolicParams.from_params(params)
    return SymbolicSearch(p, np.random.default_rng(ctx.seed), seed=ctx.seed)
