"""`evaluate`: one request through the pipeline request -> baselines -> protocol -> scoring -> result.

Each step is its own module: `request` (what to run: tasks, seeds, limits), `payload` (the AdamW
baselines, checked), `runs` (the lr protocol through the sandboxed job), `task_scores` (scores
against AdamW) and `result` (the EvaluationResult, feedback included).
"""

from __future__ import annotations

import math
import time

from optforge.evaluators.payload import reference_for
from optforge.evaluators.request import EvalRequest, resolve_seeds, selected_tasks
from optforge.evaluators.result import protocol_failure_result, rejected_result, scored_result
from optforge.evaluators.runs import ProtocolFailure, limits_for, run_protocol
from optforge.evaluators.task_scores import score_tasks
from optforge.evaluators.trace import evaluation_trace
from optforge.types import EvaluationResult

__all__ = ["evaluate"]


def _rejection(source: str, static_check: bool) -> tuple[str | None, float]:
    """(why the rule is rejected before running, or None; its literal LR)."""
    from optforge import sandbox
    from optforge.rule import check_rule, literal_constants

    problems = [str(p) for p in check_rule(source, sandbox.RULE_POLICY if static_check else None)]
    if problems:
        return "; ".join(problems), math.nan
    lr0 = literal_constants(source).get("LR")
    if isinstance(lr0, bool) or not isinstance(lr0, (int, float)) or not math.isfinite(lr0) or lr0 <= 0:
        return f"LR must be a literal positive number like 'LR = 1e-3', got {lr0!r}", math.nan
    return None, float(lr0)


def evaluate(request: EvalRequest) -> EvaluationResult:
    """Score `request.source`. What the rule does becomes a status, never an exception here.

    Raises only for a caller error: unknown suite, or baselines missing / built for another version.
    """
    from optforge.evaluators.tasks import get_suite
    from optforge.rule_flags import task_detection_flags

    t0, cpu0 = time.time(), time.process_time()
    # request: what runs
    suite = get_suite(request.suite)
    smoke = suite.name == "smoke"
    tasks = selected_tasks(request, suite)
    sel, fresh = resolve_seeds(request, suite, smoke)
    scored_seeds = fresh or sel
    limits = limits_for(request, smoke)
    why, lr0 = _rejection(request.source, limits.static_check)
    if why is not None:
        return rejected_result(request, suite, scored_seeds, why)
    # baselines
    ref = reference_for(request, suite, tasks, len(sel))
    # protocol
    protocol = run_protocol(request, tasks, lr0, (sel, fresh), ref, limits, smoke)
    if isinstance(protocol, ProtocolFailure):
        return protocol_failure_result(request, suite, scored_seeds, protocol)
    # scoring
    scores = score_tasks(protocol.infos, protocol.tunings, ref, lr0, scored_seeds, smoke)
    # result
    extra = {}
    flags = task_detection_flags(request.source)
    if flags:
        extra["task_detection"] = [f.to_dict() for f in flags]
    if request.detail == "trace":
        extra["trace"] = evaluation_trace(request.source, protocol.tunings)
    cost = {"cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.time() - t0}
    return scored_result(request, suite, scored_seeds, ref, protocol, scores, cost, extra)
