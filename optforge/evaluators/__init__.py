"""Evaluators: score one rule on a suite against tuned AdamW (DESIGN section 5).

`evaluate(EvalRequest) -> EvaluationResult` is what the engine calls (inside a Ray task) and what
`optforge eval` calls. Every training run goes through the sandboxed job; validation losses are
computed here, in the trusted process, from the returned snapshots. `baseline_payload(suite)` gives
the committed AdamW curves of a suite, to ship with requests to nodes that have no cache.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from optforge.evaluators.request import EvalRequest, fixed_multipliers, resolve_seeds, selected_tasks
from optforge.types import EvaluationResult, Status, status_for_reason

log = logging.getLogger(__name__)

__all__ = ["EvalRequest", "evaluate", "baseline_payload", "wd_grid_for"]


def baseline_payload(suite: str) -> dict:
    """The committed AdamW baseline curves of `suite`, checked against the live suite version."""
    from optforge.evaluators import baselines
    from optforge.evaluators.tasks import get_suite

    data = baselines.load(suite)
    errors, warnings = baselines.check(data, get_suite(suite))
    if errors:
        raise baselines.BaselineError("; ".join(errors))
    for w in warnings:
        log.warning("%s", w)
    return baselines.payload_from(data)


def wd_grid_for(payload: dict, *, tune_wd: bool, stage: str, suite: str) -> tuple[float, ...]:
    """The weight decays a `stage` on `suite` tries: AdamW's grid in the baselines when it tunes them.

    Raises BaselineError when it should and the baselines have none: tuning the candidate alone would
    be unfair to AdamW.
    """
    from optforge.evaluators.baselines import BaselineError, weight_decay_grid

    if not tune_wd:
        return ()
    grid = weight_decay_grid(payload)
    if not grid:
        raise BaselineError(
            f"stage '{stage}' tunes weight decay, but the baselines of suite '{suite}' have no "
            f"weight-decay runs for AdamW; add them with `optforge baselines --suite {suite} --add-wd`, "
            "or set `tune_wd: false` on the stage"
        )
    return grid


def _typical_wd(wds: list[float]) -> float:
    """The weight decay chosen on the most tasks (the smaller on a tie): the exported default."""
    return min(set(wds), key=lambda w: (-wds.count(w), w)) if wds else 0.0


def _limits(request: EvalRequest, smoke: bool) -> Any:
    from optforge import sandbox

    cfg = dict(request.sandbox)
    if "require" in cfg:
        cfg["require"] = tuple(cfg["require"])
    cfg.setdefault("timeout_s", 60.0 if smoke else 600.0)
    return sandbox.Limits(**cfg)


def _failure(request: EvalRequest, suite: Any, status: Status, feedback: str, **artifacts: Any) -> EvaluationResult:
    sel, fresh = resolve_seeds(request, suite, suite.name == "smoke")
    return EvaluationResult(
        status=status,
        stage=request.stage,
        suite=suite.name,
        suite_version=suite.version,
        seeds=fresh or sel,
        feedback=feedback,
        artifacts={k: v for k, v in artifacts.items() if v is not None},
    )


def evaluate(request: EvalRequest) -> EvaluationResult:
    """Score `request.source`. What the rule does becomes a status, never an exception here.

    Raises only for a caller error: unknown suite, or baselines missing / built for another version.
    """
    from optforge import sandbox
    from optforge.evaluators import feedback as fb
    from optforge.evaluators.baselines import adamw_curves, paired_seed_scores, task_delta, task_sigma
    from optforge.evaluators.protocol import ProtocolConfig, TaskInfo, multiplier, tune
    from optforge.evaluators.scoring import (
        SCORE_VERSION, aggregate, failed_task, half_width, mean_curve, running_min, task_score,
    )
    from optforge.evaluators.tasks import get_suite
    from optforge.evaluators.train import eval_points
    from optforge.evaluators.validate import BatchFailure, SandboxExecutor
    from optforge.rule import check_rule, literal_constants
    from optforge.rule_flags import task_detection_flags

    t0, cpu0 = time.time(), time.process_time()
    suite = get_suite(request.suite)
    smoke = suite.name == "smoke"
    limits = _limits(request, smoke)
    problems = [str(p) for p in check_rule(request.source, sandbox.RULE_POLICY if limits.static_check else None)]
    if problems:
        text = "; ".join(problems)
        return _failure(request, suite, Status.INVALID, f"The rule was rejected before running: {text}.", exception=text)
    lr0 = literal_constants(request.source).get("LR")
    if isinstance(lr0, bool) or not isinstance(lr0, (int, float)) or not math.isfinite(lr0) or lr0 <= 0:
        text = f"LR must be a literal positive number like 'LR = 1e-3', got {lr0!r}"
        return _failure(request, suite, Status.INVALID, f"The rule was rejected before running: {text}.", exception=text)

    payload = request.baselines if request.baselines is not None else baseline_payload(request.suite)
    if payload.get("suite_version") != suite.version:
        from optforge.evaluators.baselines import BaselineError

        raise BaselineError(
            f"the baselines sent are for suite '{suite.name}' version {payload.get('suite_version')!r}, "
            f"the suite is version {suite.version!r}; rebuild them with `optforge baselines --suite {suite.name} --rebuild`"
        )
    wd_grid = wd_grid_for(payload, tune_wd=request.tune_wd, stage=request.stage, suite=request.suite)
    sel, fresh = resolve_seeds(request, suite, smoke)
    config = ProtocolConfig(halving=False, max_extensions=0) if smoke else ProtocolConfig()
    tasks = selected_tasks(request, suite)
    infos = [TaskInfo(t.name, t.family, int(t.steps)) for t in tasks]
    ex = SandboxExecutor(
        request.source,
        request.suite,
        {t.name: t for t in tasks},
        limits,
        sandbox.RULE_POLICY,
        workers=int(request.workers),
        cost_per_step={k: float(v.get("cost_per_step", 1.0)) for k, v in payload["tasks"].items()},
        fingerprint_next=smoke or request.stage == "smoke",
        name=request.name,
    )
    deltas = {t.name: task_delta(payload, t.name, len(sel)) for t in infos}
    try:
        tunings = tune(infos, float(lr0), sel, ex, eval_points, config, fresh_seeds=fresh, wd_grid=wd_grid, deltas=deltas,
                       fixed_multipliers=fixed_multipliers(request, tasks))
    except BatchFailure as e:
        res = e.result
        status = status_for_reason(e.reason)
        exc = getattr(res, "exception", None) or (str(e) if e.reason == "bad_output" else None)
        return _failure(
            request, suite, status,
            fb.failure_text(status.value, e.reason, exc, getattr(res, "stderr_tail", "")),
            exception=exc,
            stdout_tail=getattr(res, "stdout_tail", None),
            stderr_tail=getattr(res, "stderr_tail", None),
            sandbox={"reason": e.reason, "layers": dict(getattr(res, "layers", None) or {})},
        )

    scored_seeds = fresh or sel
    task_rows, curves_art, scores, hws = {}, {}, {}, {}
    per_seed: dict[int, list[float]] = {}
    step_ratios = []
    for t in infos:
        tt = tunings[t.name]
        curves, used = adamw_curves(payload, t.name, scored_seeds, weight_decay=bool(wd_grid))
        runs = tt.reported
        div = tt.all_diverged or any(r.diverged for r in runs)
        steps = list(runs[0].spec.eval_steps) if runs else []
        val = mean_curve([r.val for r in runs]) if runs and not div else []
        delta = task_delta(payload, t.name, len(scored_seeds))
        s = failed_task("diverged", curves, t.steps) if div else task_score(steps, val, curves, t.steps, delta=delta)
        hws[t.name] = half_width(task_sigma(payload, t.name), len(scored_seeds))
        seed_scores = paired_seed_scores(payload, t.name, steps, {r.spec.seed: r.val for r in runs},
                                         weight_decay=bool(wd_grid)) if runs and not div else {}
        for seed in scored_seeds:
            # a failed task is the floor on every seed; a seed AdamW has no curves for is not paired
            per_seed.setdefault(int(seed), []).append(s.score if div else seed_scores.get(int(seed), math.nan))
        flags = list(s.flags)
        if tt.at_edge:
            flags.append(f"lr_edge_{tt.at_edge}")
        if list(used) != list(scored_seeds):
            flags.append("baseline_seeds_differ")
        scores[t.name] = s
        best_adamw = min(curves, key=lambda c: min(c.val), default=None) if curves else None
        at_t = [c for c in curves if c.horizon == t.steps]
        best_t = min(at_t, key=lambda c: min(c.val)) if at_t else best_adamw
        task_rows[t.name] = {
            "score": s.score,
            "hw": hws[t.name],  # 95 % half width, 1.96 sigma_task / sqrt(seeds)
            "delta": delta,
            "seed_scores": {str(k): v for k, v in seed_scores.items()},
            "lr": lr0 * multiplier(tt.chosen) if tt.chosen is not None else None,
            "lr_mult": multiplier(tt.chosen) if tt.chosen is not None else None,
            "weight_decay": tt.wd,
            "best_val": s.best_val if math.isfinite(s.best_val) else None,
            "adamw_val": s.adamw_val if math.isfinite(s.adamw_val) else None,
            "speedup": s.speedup,
            "steps_needed": s.steps_needed,
            "adamw_steps": s.adamw_steps,
            "family": t.family,
            "flags": flags,
            "tried": {f"{multiplier(h):.4g}": (v if math.isfinite(v) else None) for h, v in sorted(tt.screen.items())},
        }
        curves_art[t.name] = {
            "steps": steps,
            "val": [v if math.isfinite(v) else None for v in (running_min(val) if val else [])],
            "adamw_val": list(running_min(best_t.val)) if best_t else [],
            "train_loss": [
                sum(x) / len(x) for x in zip(*[r.train_loss for r in runs])
            ] if runs and not div and all(len(r.train_loss) == len(steps) for r in runs) else [],
        }
        ok_runs = [r for r in runs if not r.diverged and r.n_params]
        timed = [r for r in ok_runs if r.adamw_step_seconds > 0 and r.timed_step_seconds > 0]
        if timed:
            # both times measured alike in the same job: the ratio does not depend on the machine or load
            step_ratios.append(sum(r.timed_step_seconds / r.adamw_step_seconds for r in timed) / len(timed))

    agg = aggregate({k: v.score for k, v in scores.items()}, hws)
    all_div = [tunings[t.name].all_diverged or "diverged" in scores[t.name].flags for t in infos]
    status = Status.DIVERGED if (any(all_div) if smoke else all(all_div)) else Status.OK
    step_ratio = math.exp(sum(math.log(x) for x in step_ratios) / len(step_ratios)) if step_ratios else None
    metrics = {
        **agg,
        "score_version": SCORE_VERSION,
        # d_s: the mean over tasks of the paired score on seed s (the funnel's t-test takes these)
        # only seeds paired on every task (a build with fewer seeds leaves the others out)
        "seed_fitness": {str(k): sum(v) / len(v) for k, v in per_seed.items() if v and all(math.isfinite(x) for x in v)},
        "tasks": task_rows,
        "step_time_ratio": step_ratio,
        # the rule process's resident memory on a fixed probe, measured outside it (validate.state_probe)
        "state_bytes_per_param": ex.state_probe["after_steps"] / ex.state_probe["n_params"] if ex.state_probe else None,
        "state_bytes_resolution_per_param": (
            ex.state_probe["resolution"] / ex.state_probe["n_params"] if ex.state_probe else None
        ),
        "weight_decay": _typical_wd([tunings[t.name].wd for t in infos]),
        "cpu_seconds": round(ex.cpu_s + (time.process_time() - cpu0), 3),
        "wall_seconds": round(time.time() - t0, 3),
        "train_seconds": round(ex.train_s, 3),
        "sandbox_calls": ex.calls,
    }
    artifacts: dict[str, Any] = {
        "curves": curves_art,
        "stdout_tail": ex.stdout_tail,
        "stderr_tail": ex.stderr_tail,
        "exception": None,
        "sandbox": {"reason": "ok", "layers": ex.layers, "rule_layers": ex.rule_layers},
        "baseline_torch": payload.get("torch"),
        "wd_tuned": list(wd_grid),
    }
    if ex.fingerprint:
        artifacts["fingerprint"] = ex.fingerprint
    flags = task_detection_flags(request.source)
    if flags:
        artifacts["task_detection"] = [f.to_dict() for f in flags]
    return EvaluationResult(
        status=status,
        stage=request.stage,
        suite=suite.name,
        suite_version=suite.version,
        seeds=scored_seeds,
        metrics=metrics,
        artifacts=artifacts,
        feedback=fb.result_text(tunings, scores, agg, step_ratio, status.value),
    )
