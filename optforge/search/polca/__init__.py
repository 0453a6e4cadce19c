"""`polca`: POLCA (Ren, Nie, Xie, Cheng, "Stochastic Generative Optimization with LLM", arXiv 2603.14769),
priority search over noisy minibatch rollouts with an epsilon-net and a summarizer.

- `strategy.PolcaStrategy`: the iteration (pop, minibatch rollouts, proposals, epsilon-net,
  validation, push back; the summarizer on schedule), `busy()` while it waits, state for resume;
- `params.PolcaConfig`: the `strategy:` keys, through `optforge.config.build_strategy_params`;
- `memory`: the bounded priority queue of candidates with their (task, seed) rollouts, `mean` or
  `ucb` priority over [FLOOR, CEILING], ties to the newer candidate, the exploit pick with
  `min_rollouts`, and a JSON state that round-trips exactly;
- `epsilon_net`: greedy farthest-first acceptance, the `behaviour` embedding (probe updates in
  units of the step size: epsilon 1e-3 is 1e-3 relative RMS) and unit-normalised text embeddings;
- `children`: step 4, the LLM's children per (candidate, minibatch), parsed and embedded;
- `embedders`: `embed(source)` for the epsilon-net (`behaviour` probe updates, or a text embedding);
- `prompt`: the OptoPrimeV2-form proposer prompt (`optforge/llm/prompts/polca/`), answered with a
  ```python block that `optforge.llm.parse` reads;
- `minibatch`: (task, seed) minibatches of the search suite, each pair once per shuffled epoch;
- `summarizer`: sampling successful and failed runs, the summarizer prompt, and its XML reader.

Strategy records (`optforge show RUN --records --kind K`): `queue` (each iteration's top entries,
mean +- sd and n), `epsilon_rejection` (a proposal never evaluated, with its distance and nearest
candidate), `summary`, `evicted`.

Embeddings: `behaviour` (default, the sandbox probe), `text` (`LLMClient.embed` with
`llm.embedding_model`, budgeted and replayed like chat calls; refused at build time without one) or
`text-local` (`text_local`: the packaged all-MiniLM-L6-v2 on CPU, offline, no LLM budget; the
`optforge[embed]` extra, refused at build time without it).
`optforge show RUN` and `optforge report` show the memory (`optforge.strategy_views.polca_memory`: the
top candidates by mean over their rollouts, with sd, n and the exploit pick). Benchmarks:
`benchmarks/polca_ablation.py` (the four ablations side by side), `benchmarks/polca_epsilon_net.py`
(the epsilon-net on a known mix).
"""

from __future__ import annotations

from typing import Any, Mapping

from optforge.search.common.factory import llm_strategy_config
from optforge.search.context import ServiceUnavailable, StrategyContext, needs
from optforge.search.polca import text_local
from optforge.search.polca.params import PolcaConfig
from optforge.search.polca.embedders import behaviour_embedder, text_embedder
from optforge.search.polca.strategy import PolcaStrategy

__all__ = ["PolcaConfig", "PolcaStrategy", "from_config"]


@needs("llm", "rule_probe", "embedder")
def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> PolcaStrategy:
    """Build the strategy from the config's `strategy` mapping (minus `name`) and the run's services:
    the LLM client, and `rule_probe` (embedding `behaviour`) or the embedder (embedding `text`); embedding
    `text-local` needs the `optforge[embed]` extra (ValueError naming its install command without it)."""
    config = llm_strategy_config("polca", PolcaConfig, params, ctx)
    if config.embedding == "text-local" and config.uses_epsilon_net:
        try:
            text_local.check_installed()
        except text_local.ExtraMissing as e:
            raise ValueError(str(e)) from e
        embed = text_embedder(text_local.embed_texts)
    elif config.embedding == "text" and config.uses_epsilon_net:
        try:
            embed = text_embedder(ctx.embedder)
        except ServiceUnavailable as e:
            raise ValueError(f"strategy.embedding=text: {e}; or use embedding: behaviour (needs no model)") from e
        if not getattr(getattr(ctx.llm_client, "settings", None), "embedding_model", None):
            raise ValueError("strategy.embedding=text needs llm.embedding_model (a litellm embedding model); "
                             "or use embedding: behaviour (needs no model)")
    else:
        embed = behaviour_embedder(ctx.rule_probe)
    return PolcaStrategy(config, ctx.llm, ctx.rng, embed, ctx.record)
