"""Strategy `evolve`: LLM program evolution over update rules (islands, weighted parents,
inspirations, diff or full rewrites, dedup, model bandit). See `strategy.py`."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from optforge.search.common.factory import llm_strategy_config
from optforge.search.context import StrategyContext, needs
from optforge.search.evolve.config import EvolveConfig
from optforge.search.evolve.strategy import EvolveStrategy

__all__ = ["EvolveConfig", "EvolveStrategy", "from_config"]


@needs("llm")
def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> EvolveStrategy:
    """Build the strategy from the config's `strategy` mapping (minus `name`) and the run's LLM client."""
    config = llm_strategy_config("evolve", EvolveConfig, params, ctx)
    return EvolveStrategy(config, ctx.llm, np.random.default_rng(ctx.seed))
