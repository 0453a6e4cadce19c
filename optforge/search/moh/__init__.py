"""`moh`: MoH, meta-optimization of heuristics (Shi et al., "Generalizable Heuristic Generation Through
LLMs with Meta-Optimization", ICLR 2026, arXiv 2505.20881): LLM-written search procedures
`improve(population, utility, llm, task)` find rules on several subtasks of the search suite, and the
best procedure, run on the procedure population (self-invocation), writes better procedures.

- `strategy.MohStrategy`: the phases and the two levels (see its docstring);
- `broker.CallBroker`: starts its procedure runs and serves their calls (LLM, utility), with the logs
  that make a run resumable;
- `params.MohConfig`: the `strategy:` keys, through `optforge.config.build_strategy_params`, with
  defaults scaled to CPU (`params.cpu_defaults`);
- `subtasks`: subtasks of the search suite, their weights (task cost by default) and the meta-utility;
- `evals`: rule evaluations behind `utility(source, subtask)` (a candidate, then one rollout per subtask);
- `runs`: a procedure run's spec and answer log (resume re-runs it from its start);
- `procedures`: the seed procedures (`seeds/evolve.py`, `seeds/polca.py`, `seeds/meta.py`) or a file;
- `prompt`: the task texts a procedure is handed (`optforge/llm/prompts/moh/`).

Strategy records (`optforge show RUN --records --kind K`): `subtasks`, `procedure` (each procedure,
its meta-utility per subtask, its parent, the rules it found), `procedure_run` (each sandbox run,
its status and reason), `procedure_llm` (LLM calls a run made), `meta_iteration` (self-invocation and
acceptance). `optforge export-procedure RUN_DIR` writes the best procedure as a file a run can seed from.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

from optforge.search.context import StrategyContext, needs
from optforge.search.moh.params import MohConfig
from optforge.search.moh.strategy import MohStrategy

__all__ = ["MohConfig", "MohStrategy", "from_config"]


@needs("llm", "procedure_sandbox")
def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> MohStrategy:
    """Build the strategy from the config's `strategy` mapping (minus `name`), the run's LLM client and
    a procedure sandbox with the configured limits."""
    config = MohConfig.from_params(params)
    if ctx.llm_client is None:
        raise ValueError("strategy 'moh' needs an LLM: configure the llm section (model, api_key_env, or "
                         "replay: RUN_DIR to run offline)")
    from optforge.sandbox.procedure import ProcedureLimits

    limits = ProcedureLimits(cpu_s=config.cpu_s, wall_s=config.wall_s, max_calls=config.max_calls)
    sandbox = ctx.procedure_sandbox(limits)
    strategy = MohStrategy(config, ctx.llm, ctx.rng, sandbox, ctx.record)
    weakref.finalize(strategy, MohStrategy.kill_all, strategy.handles)
    return strategy
