"""Strategy `evolve`: LLM program evolution over update rules (islands, weighted parents,
inspirations, diff or full rewrites, dedup, model bandit). See `strategy.py`."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from optforge.search.context import StrategyContext, needs
from optforge.search.evolve.config import EvolveConfig
from optforge.search.evolve.strategy import EvolveStrategy

__all__ = ["EvolveConfig", "EvolveStrategy", "from_config"]


@needs("llm")
def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> EvolveStrategy:
    """Build the strategy from the config's `strategy` mapping (minus `name`) and the run's LLM client."""
    config = EvolveConfig.from_params(params)
    if ctx.llm_client is None:
        raise ValueError("strategy 'evolve' needs an LLM: configure the llm section (model, api_key_env, or "
                         "replay: RUN_DIR to run offline)")
    return EvolveStrategy(config, ctx.llm, np.random.default_rng(ctx.seed))
