"""Evaluators: score one rule on a suite against tuned AdamW.

`evaluate(EvalRequest) -> EvaluationResult` is what the engine calls (inside a Ray task) and what
`optforge eval` calls. Every training run goes through the sandboxed job; validation losses are
computed here, in the trusted process, from the returned snapshots. `baseline_payload(suite)` gives
the committed AdamW curves of a suite, to ship with requests to nodes that have no cache.

A request goes through one straight pipeline (optforge/evaluators/pipeline.py): request ->
baselines (payload.py) -> protocol (runs.py) -> scoring (task_scores.py) -> result (result.py).
"""

from optforge.evaluators.payload import baseline_payload, wd_grid_for
from optforge.evaluators.pipeline import evaluate
from optforge.evaluators.request import EvalRequest

__all__ = ["EvalRequest", "evaluate", "baseline_payload", "wd_grid_for"]
