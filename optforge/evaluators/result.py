"""The result step: an `EvaluationResult` from the scores and what the sandbox calls saw, or from a
failure (a rule rejected before running, a sandbox call without a usable result)."""

from __future__ import annotations

from typing import Any

from optforge.evaluators import feedback as fb
from optforge.evaluators.payload import Reference
from optforge.evaluators.request import EvalRequest
from optforge.evaluators.runs import Protocol, ProtocolFailure
from optforge.evaluators.task_scores import Scores
from optforge.types import EvaluationResult, Status, status_for_reason

__all__ = ["failure_result", "protocol_failure_result", "rejected_result", "scored_result"]


def failure_result(request: EvalRequest, suite: Any, seeds: tuple[int, ...], status: Status, feedback: str,
                   **artifacts: Any) -> EvaluationResult:
    """A result with no scores (the floor), its `feedback` and the non-None `artifacts`."""
    return EvaluationResult(
        status=status,
        stage=request.stage,
        suite=suite.name,
        suite_version=suite.version,
        seeds=seeds,
        feedback=feedback,
        artifacts={k: v for k, v in artifacts.items() if v is not None},
    )


def rejected_result(request: EvalRequest, suite: Any, seeds: tuple[int, ...], why: str) -> EvaluationResult:
    """INVALID: the rule failed a check before anything ran."""
    return failure_result(request, suite, seeds, Status.INVALID, f"The rule was rejected before running: {why}.",
                          exception=why)


def protocol_failure_result(request: EvalRequest, suite: Any, seeds: tuple[int, ...],
                            failure: ProtocolFailure) -> EvaluationResult:
    """The status of the sandbox's reason, with the rule's exception and output tails."""
    res = failure.result
    status = status_for_reason(failure.reason)
    exc = getattr(res, "exception", None) or (failure.message if failure.reason == "bad_output" else None)
    return failure_result(
        request, suite, seeds, status,
        fb.failure_text(status.value, failure.reason, exc, getattr(res, "stderr_tail", "")),
        exception=exc,
        stdout_tail=getattr(res, "stdout_tail", None),
        stderr_tail=getattr(res, "stderr_tail", None),
        sandbox={"reason": failure.reason, "layers": dict(getattr(res, "layers", None) or {})},
    )


def _typical_wd(wds: list[float]) -> float:
    """The weight decay chosen on the most tasks (the smaller on a tie): the exported default."""
    return min(set(wds), key=lambda w: (-wds.count(w), w)) if wds else 0.0


def scored_result(request: EvalRequest, suite: Any, seeds: tuple[int, ...], ref: Reference, protocol: Protocol,
                  scores: Scores, cost: dict[str, float], extra_artifacts: dict[str, Any]) -> EvaluationResult:
    """The full result: metrics (aggregate, task rows, costs, state memory), artifacts, feedback.

    `cost` holds the evaluator's own cpu_seconds and wall_seconds (the sandbox's CPU is added here).
    """
    from optforge.evaluators.scoring import SCORE_VERSION

    ex = protocol.executor
    probe = ex.state_probe
    metrics = {
        **scores.aggregate,
        "score_version": SCORE_VERSION,
        # d_s per seed: the funnel's t-test takes these
        "seed_fitness": scores.seed_fitness,
        "tasks": scores.task_rows,
        "step_time_ratio": scores.step_time_ratio,
        # the rule process's resident memory on a fixed probe, measured outside it (validate.state_probe)
        "state_bytes_per_param": probe["after_steps"] / probe["n_params"] if probe else None,
        "state_bytes_resolution_per_param": probe["resolution"] / probe["n_params"] if probe else None,
        "weight_decay": _typical_wd([protocol.tunings[t.name].wd for t in protocol.infos]),
        "cpu_seconds": round(ex.cpu_s + cost["cpu_seconds"], 3),
        "wall_seconds": round(cost["wall_seconds"], 3),
        "train_seconds": round(ex.train_s, 3),
        "sandbox_calls": ex.calls,
    }
    artifacts: dict[str, Any] = {
        "curves": scores.curves,
        "stdout_tail": ex.stdout_tail,
        "stderr_tail": ex.stderr_tail,
        "exception": None,
        "sandbox": {"reason": "ok", "layers": ex.layers, "rule_layers": ex.rule_layers},
        "baseline_torch": ref.payload.get("torch"),
        "wd_tuned": list(ref.wd_grid),
    }
    if ex.fingerprint:
        artifacts["fingerprint"] = ex.fingerprint
    artifacts.update(extra_artifacts)
    return EvaluationResult(
        status=scores.status,
        stage=request.stage,
        suite=suite.name,
        suite_version=suite.version,
        seeds=seeds,
        metrics=metrics,
        artifacts=artifacts,
        feedback=fb.gate_text(protocol.tunings, scores.scores, scores.status.value) if suite.name == "smoke" else
        fb.result_text(protocol.tunings, scores.scores, scores.aggregate, scores.step_time_ratio, scores.status.value),
    )
