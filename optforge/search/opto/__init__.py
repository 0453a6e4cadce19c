"""`opto`: Trace/OPTO with OptoPrime (Cheng, Nie, Swaminathan, "Trace is the Next AutoDiff",
NeurIPS 2024, arXiv 2406.16218): the rule source is the trainable parameter, one evaluation at
`trace` detail is the oracle, and an LLM reads the evaluation's sections and suggests new values.

What exists (pure parts, tested in tests/search/opto/):
- `params.OptoConfig`: the `strategy:` keys (memory_size, split_constants, chains, mask, detail,
  minibatch, per-section character budgets), through `optforge.config.build_strategy_params`;
- `variables`: the rule as the code variable `rule`, with `split_constants` each numeric
  UPPER_CASE constant its own variable; the projection of a suggestion (static rule check, constants
  cast to their type and held to the hyperparameter conventions), a constant written into its
  literal only, and the change record lineage shows ("constant BETA2 0.999 -> 0.995");
- `suggestion`: the OptoPrime answer reader, on top of `optforge.llm.parse.read_answer`: JSON
  (bare, fenced, or the outermost braces), XML, TERMINATE; `Outcome` update / no_change / invalid
  with the reason;
- `memory`: the FIFO of past (variables, feedback) pairs, rendered oldest first, exact JSON state;
- `sections`: #Code, #Documentation, #Variables, #Inputs, #Others, #Outputs, #Feedback from an
  `EvaluationResult`, each within its budget, masked sections empty, tasks named only by the
  trace's "task i" labels; `prompt`: the chat messages
  (templates in optforge/llm/prompts/opto/).

- `strategy.OptoStrategy`: the chains (see its docstring); registered as `strategy: {name: opto}`
  (configs/opto.yaml, and configs/opto_masked.yaml for the OPRO-like ablation). Records: `step` (each
  answer: what changed, the feedback it answered, the task labels' names for show/report),
  `best_chain`, `chain_ended`; `optforge show` lists the steps per chain (`optforge.strategy_views`).
"""

from __future__ import annotations

from typing import Any, Mapping

from optforge.search.common.factory import llm_strategy_config
from optforge.search.context import StrategyContext, needs
from optforge.search.opto.params import OptoConfig
from optforge.search.opto.strategy import OptoStrategy

__all__ = ["OptoConfig", "OptoStrategy", "from_config"]


@needs("llm")
def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> OptoStrategy:
    """Build the strategy from the config's `strategy` mapping (minus `name`) and the run's LLM client."""
    config = llm_strategy_config("opto", OptoConfig, params, ctx)
    return OptoStrategy(config, ctx.llm, ctx.seed, ctx.record)
