"""Reading AdamW out of stored baselines: its curves over some seeds, its arms picked on the selection
seeds, the paired per-seed score against it, and each task's resolution delta and sigma_task.

delta (format 2, per task `resolution`): rho, AdamW's best loss and its per-seed bests, from which
delta follows for any number of seeds (`scoring.resolution`). sigma_task: the per-seed sd of the
paired score of the references against AdamW (`statistics.measure_sigma`).

Everything AdamW's side picks or derives (its arm at each horizon, the best loss and per-seed bests
behind delta) is measured on the selection seeds only (`pick_seeds`): the report and search seeds
never help choose the bar they are scored against, and adding seeds to a build (`add_seeds`) moves
neither AdamW's chosen lrs nor delta.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from optforge.evaluators.protocol import RunOutcome, pick
from optforge.evaluators.scoring import RHO_FLOOR, BaselineCurve, mean_curve, resolution, running_min, task_score

RHO = 1e-4
"""The suite-wide relative resolution of a best loss across machines and kernels: RHO_FLOOR, which the
measured differences stay below on every task of train, heldout_tiny and smoke (largest 6.9e-5). A
task that amplifies float differences more stores its own measured rho (`measure_rho`; on heldout
cnn_bnres 9.8e-2, mlp_deep 1.9e-2, mlp_digits_fullbatch 1.3e-3). See docs/suites.md "The score"."""


def run_wd(run: Mapping[str, Any]) -> float:
    """The weight decay of a stored run (builds before weight-decay tuning have none: 0)."""
    return float(run.get("wd", 0.0))


def weight_decay_grid(payload: Mapping[str, Any]) -> tuple[float, ...]:
    """The nonzero weight decays AdamW was given in these baselines (empty: none)."""
    return tuple(float(w) for w in payload.get("weight_decays") or () if float(w) > 0)


def adamw_curves(
    payload: Mapping[str, Any], task: str, seeds: Sequence[int], *, weight_decay: bool = False
) -> tuple[list[BaselineCurve], list[int]]:
    """Tuned AdamW's mean curves on `task` over `seeds` (those its arms have; all if none overlap), as a
    candidate would have them: at each horizon the one arm `selected_runs` picks on the selection seeds
    (its lr and, with `weight_decay`, its weight decay), leaving out an arm that diverged on those seeds.

    Returns the curves (one per horizon) and the seeds used. Only picked arms, never the envelope over
    every lr on the scored seeds: the lowest of 7 noisy mean curves is an oracle that no rule tuned on
    the selection seeds can match, which scored AdamW against itself at -1.5 on a noisy task
    (docs/suites.md "The score").
    """
    runs = selected_runs(payload, task, weight_decay=weight_decay)
    have = {int(s) for r in runs for s in r["val"]}
    use = [s for s in seeds if s in have] or sorted(have)
    curves = []
    for r in runs:
        vals = [r["val"].get(str(s)) for s in use]
        if any(v is None or r["diverged"].get(str(s)) for v, s in zip(vals, use)):
            continue
        curves.append(BaselineCurve(float(r["lr"]), int(r["horizon"]), tuple(r["steps"]),
                                    tuple(mean_curve(vals))))
    return curves, use


def outcomes_of(rec: Mapping[str, Any], seeds: Sequence[int]) -> list[RunOutcome]:
    """A stored run record as RunOutcomes on `seeds` (for `pick`, which ranks outcomes)."""
    from optforge.evaluators.protocol import RunSpec

    out = []
    for s in seeds:
        val = [math.inf if v is None else float(v) for v in rec["val"][str(s)]]
        spec = RunSpec("", int(rec.get("h", 0)), float(rec["lr"]), int(s), int(rec["steps"][-1]), int(rec["horizon"]),
                       tuple(int(x) for x in rec["steps"]), run_wd(rec))
        out.append(RunOutcome(spec, list(spec.eval_steps[: len(val)]), val, [],
                              0 if rec["diverged"].get(str(s)) else None))
    return out


def runs_at(task_rec: Mapping[str, Any], horizon: int) -> list[dict]:
    """AdamW's stored runs at `horizon` without weight decay (one record per lr arm)."""
    return [r for r in task_rec["adamw"]["runs"] if int(r["horizon"]) == int(horizon) and run_wd(r) == 0]


def pick_seeds(selection: Sequence[int] | None, runs: Sequence[Mapping[str, Any]]) -> list[int]:
    """The seeds AdamW's arms are picked on and delta is measured on: the `selection` seeds the stored
    `runs` have, or every seed they have when they hold none (a custom build without them)."""
    have = {int(s) for r in runs for s in r["val"]}
    return [int(s) for s in selection or () if int(s) in have] or sorted(have)


def _mean_best(rec: Mapping[str, Any], seeds: Sequence[int]) -> float:
    return min(running_min(mean_curve([[math.inf if v is None else v for v in rec["val"][str(s)]] for s in seeds])))


def task_resolution(task_rec: Mapping[str, Any], rho: float = RHO, selection: Sequence[int] | None = None) -> dict:
    """What delta is made of for one task, measured on the selection seeds (`pick_seeds`): rho (the
    suite's, or the task's measured one if larger: `measure_rho`), AdamW's best mean loss at horizon T
    (the arm with the lowest mean best over those seeds) and that arm's per-seed best losses there."""
    rho = max(float(rho), float(task_rec.get("rho_measured") or 0.0), RHO_FLOOR)
    seeds = pick_seeds(selection, runs_at(task_rec, task_rec["T"]))
    runs = [r for r in runs_at(task_rec, task_rec["T"])
            if all(str(s) in r["val"] and not r["diverged"].get(str(s)) for s in seeds)]
    if not runs:
        return {"rho": rho, "best_loss": None, "seed_bests": [], "seeds": seeds}
    best = min(runs, key=lambda r: _mean_best(r, seeds))
    return {
        "rho": rho,
        "best_loss": _mean_best(best, seeds),
        "seed_bests": [_mean_best(best, [s]) for s in seeds],
        "seeds": seeds,
    }


def task_delta(payload: Mapping[str, Any], task: str, n: int) -> float:
    """delta of `task` for a score on n seeds (`scoring.resolution`); 0 with no stored resolution."""
    res = payload["tasks"][task].get("resolution") or task_resolution(
        payload["tasks"][task], payload.get("rho") or RHO, payload.get("selection_seeds"))
    if res.get("best_loss") is None:
        return 0.0
    return resolution(res["best_loss"], res["seed_bests"], res["rho"], n)


def chosen_run(payload: Mapping[str, Any], task: str, horizon: int) -> dict | None:
    """AdamW's arm (lr) at `horizon`, weight decay 0, as the protocol picks it (`protocol.pick`, delta
    for the mean of the selection seeds) on the selection seeds only; None if no arm has them all."""
    t = payload["tasks"][task]
    seeds = pick_seeds(payload.get("selection_seeds"), t["adamw"]["runs"])
    plain = [r for r in runs_at(t, horizon) if all(str(s) in r["val"] for s in seeds)]
    if not plain:
        return None
    return plain[pick({i: outcomes_of(r, seeds) for i, r in enumerate(plain)}, task_delta(payload, task, len(seeds)))]


def task_sigma(payload: Mapping[str, Any], task: str) -> float | None:
    """sigma_task: the per-seed sd of the paired score against AdamW (None if never measured)."""
    sigma = payload["tasks"][task].get("sigma")
    return None if sigma is None else float(sigma)


def missing_wd_arms(data: Mapping[str, Any]) -> dict[str, list[int]]:
    """{task: horizons} where the build has weight-decay runs, but none at that horizon's chosen lr."""
    out: dict[str, list[int]] = {}
    if len(data.get("weight_decays") or []) < 2:
        return out
    for name, t in data["tasks"].items():
        runs = t["adamw"]["runs"]
        for horizon, h in (t["adamw"].get("chosen") or {}).items():
            if h is not None and not any(run_wd(r) > 0 and int(r["horizon"]) == int(horizon) and r.get("h") == h
                                         for r in runs):
                out.setdefault(name, []).append(int(horizon))
    for hs in out.values():
        hs.sort()
    return out


def selected_runs(payload: Mapping[str, Any], task: str, *, weight_decay: bool = False) -> list[dict]:
    """AdamW's runs as a candidate would have them: at each horizon the lr (`chosen_run`) and, with
    `weight_decay`, the weight decay at that lr, both picked by `protocol.pick` on the selection seeds
    only, so that no report seed helps choose AdamW's arm. Falls back to every stored seed if none is
    a selection seed."""
    t = payload["tasks"][task]
    runs = t["adamw"]["runs"]
    sel = pick_seeds(payload.get("selection_seeds"), runs)
    delta = task_delta(payload, task, len(sel))
    out = []
    for horizon in sorted({int(r["horizon"]) for r in runs}):
        best = chosen_run(payload, task, horizon)
        if best is None:
            continue
        arms = [best]
        if weight_decay:
            arms += [r for r in runs if int(r["horizon"]) == horizon and run_wd(r) > 0 and r.get("h") == best.get("h")
                     and all(str(s) in r["val"] for s in sel)]
        out.append(arms[pick({i: outcomes_of(r, sel) for i, r in enumerate(arms)}, delta)])
    return out


def paired_seed_scores(
    payload: Mapping[str, Any], task: str, steps: Sequence[int], per_seed: Mapping[int, Sequence[float | None]],
    *, weight_decay: bool = False,
) -> dict[int, float]:
    """Each seed's curve scored against AdamW on that same seed (common random numbers): the paired
    per-seed score, with delta for one seed. AdamW's side is `selected_runs` (its arms picked on the
    selection seeds), so no report seed picks AdamW's lr. Seeds AdamW lacks are left out."""
    t = payload["tasks"][task]
    chosen = selected_runs(payload, task, weight_decay=weight_decay)
    delta = task_delta(payload, task, 1)
    out = {}
    for seed, val in per_seed.items():
        key = str(int(seed))
        curves = [BaselineCurve(float(r["lr"]), int(r["horizon"]), tuple(r["steps"]),
                                tuple(math.inf if v is None else float(v) for v in r["val"][key]))
                  for r in chosen if key in r["val"] and not r["diverged"].get(key)]
        if not any(c.horizon == int(t["T"]) for c in curves):
            continue
        vals = [math.inf if v is None else float(v) for v in val]
        out[int(seed)] = task_score(steps, vals, curves, int(t["T"]), delta=delta,
                                    diverged=any(not math.isfinite(v) for v in vals)).score
    return out
