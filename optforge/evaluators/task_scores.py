"""The scoring step: each task's scored runs against AdamW's curves, then the aggregate.

Per task: the score (`scoring.task_score` on the mean validation curve of the scored runs, or the
floor when they diverged), its half width, the paired per-seed scores the funnel's t-test takes,
the row a result stores (`metrics["tasks"][name]`) and the curves it plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from optforge.evaluators.payload import Reference
from optforge.evaluators.protocol import TaskInfo, TaskTuning, multiplier
from optforge.evaluators.scoring import (
    TaskScore, aggregate, failed_task, half_width, mean_curve, running_min, task_score,
)
from optforge.types import Status

__all__ = ["Scores", "score_tasks"]


@dataclass
class Scores:
    """What the scoring step gives the result step."""

    status: Status  # OK, or DIVERGED (every task diverged; the smoke suite: any task)
    scores: dict[str, TaskScore]
    aggregate: dict[str, Any]  # scoring.aggregate: fitness, its half width, wins, worst
    task_rows: dict[str, dict]
    curves: dict[str, dict]
    seed_fitness: dict[str, float]  # d_s: the mean over tasks of the paired score on seed s
    step_time_ratio: float | None  # geometric mean over tasks of the rule's step time / AdamW's


def score_tasks(
    infos: Sequence[TaskInfo],
    tunings: dict[str, TaskTuning],
    ref: Reference,
    lr0: float,
    scored_seeds: Sequence[int],
    smoke: bool,
) -> Scores:
    """Score every task of `infos` from its tuning; `scored_seeds` are the seeds of the scored runs."""
    from optforge.evaluators.baselines import adamw_curves, paired_seed_scores, task_delta, task_sigma

    payload, wd = ref.payload, bool(ref.wd_grid)
    task_rows, curves_art, scores, hws = {}, {}, {}, {}
    per_seed: dict[int, list[float]] = {}
    step_ratios = []
    for t in infos:
        tt = tunings[t.name]
        curves, used = adamw_curves(payload, t.name, scored_seeds, weight_decay=wd)
        runs = tt.reported
        div = tt.all_diverged or any(r.diverged for r in runs)
        steps = list(runs[0].spec.eval_steps) if runs else []
        val = mean_curve([r.val for r in runs]) if runs and not div else []
        delta = task_delta(payload, t.name, len(scored_seeds))
        s = failed_task("diverged", curves, t.steps) if div else task_score(steps, val, curves, t.steps, delta=delta)
        hws[t.name] = half_width(task_sigma(payload, t.name), len(scored_seeds))
        seed_scores = paired_seed_scores(payload, t.name, steps, {r.spec.seed: r.val for r in runs},
                                         weight_decay=wd) if runs and not div else {}
        for seed in scored_seeds:
            # a failed task is the floor on every seed; a seed AdamW has no curves for is not paired
            per_seed.setdefault(int(seed), []).append(s.score if div else seed_scores.get(int(seed), math.nan))
        flags = list(s.flags)
        if tt.at_edge:
            flags.append(f"lr_edge_{tt.at_edge}")
        if list(used) != list(scored_seeds):
            flags.append("baseline_seeds_differ")
        scores[t.name] = s
        task_rows[t.name] = _row(t, tt, s, lr0, hws[t.name], delta, seed_scores, flags)
        curves_art[t.name] = _curves(steps, val, curves, runs, t.steps, div)
        ok_runs = [r for r in runs if not r.diverged and r.n_params]
        timed = [r for r in ok_runs if r.adamw_step_seconds > 0 and r.timed_step_seconds > 0]
        if timed:
            # both times measured alike in the same job: the ratio does not depend on the machine or load
            step_ratios.append(sum(r.timed_step_seconds / r.adamw_step_seconds for r in timed) / len(timed))

    all_div = [tunings[t.name].all_diverged or "diverged" in scores[t.name].flags for t in infos]
    return Scores(
        status=Status.DIVERGED if (any(all_div) if smoke else all(all_div)) else Status.OK,
        scores=scores,
        aggregate=aggregate({k: v.score for k, v in scores.items()}, hws),
        task_rows=task_rows,
        curves=curves_art,
        # only seeds paired on every task (a build with fewer seeds leaves the others out)
        seed_fitness={str(k): sum(v) / len(v) for k, v in per_seed.items() if v and all(math.isfinite(x) for x in v)},
        step_time_ratio=math.exp(sum(math.log(x) for x in step_ratios) / len(step_ratios)) if step_ratios else None,
    )


def _row(t: TaskInfo, tt: TaskTuning, s: TaskScore, lr0: float, hw: float | None, delta: float,
         seed_scores: dict, flags: list[str]) -> dict:
    mult = multiplier(tt.chosen) if tt.chosen is not None else None
    return {
        "score": s.score,
        "hw": hw,  # 95 % half width, 1.96 sigma_task / sqrt(seeds)
        "delta": delta,
        "seed_scores": {str(k): v for k, v in seed_scores.items()},
        "lr": lr0 * mult if mult is not None else None,
        "lr_mult": mult,
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


def _curves(steps: list[int], val: list[float], curves: list, runs: list, T: int, div: bool) -> dict:
    best_adamw = min(curves, key=lambda c: min(c.val), default=None) if curves else None
    at_t = [c for c in curves if c.horizon == T]
    best_t = min(at_t, key=lambda c: min(c.val)) if at_t else best_adamw
    return {
        "steps": steps,
        "val": [v if math.isfinite(v) else None for v in (running_min(val) if val else [])],
        "adamw_val": list(running_min(best_t.val)) if best_t else [],
        "train_loss": [
            sum(x) / len(x) for x in zip(*[r.train_loss for r in runs])
        ] if runs and not div and all(len(r.train_loss) == len(steps) for r in runs) else [],
    }
