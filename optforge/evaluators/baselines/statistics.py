"""What a build derives from its curves without training (format 2): each task's resolution and sigma,
AdamW's chosen lrs by the delta rule, and the table of the references scored like candidates.
`upgrade` turns a format-1 file into format 2 from its stored per-seed curves, without reruns.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Mapping

from optforge.evaluators.baselines.files import FORMAT, BaselineError, payload_from
from optforge.evaluators.baselines.lookup import (
    RHO, adamw_curves, outcomes_of, paired_seed_scores, run_wd, runs_at, seeds_of, task_delta, task_resolution, task_sigma,
)
from optforge.evaluators.protocol import pick
from optforge.evaluators.scoring import CEILING, FLOOR, SCORE_VERSION, RHO_FLOOR, aggregate, half_width, mean_curve, resolution, task_score


def measure_sigma(data: Mapping[str, Any], task: str) -> float | None:
    """sigma_task from the references (every one but AdamW) on their report seeds: the pooled per-seed
    sd of their paired scores. A reference clipped at the floor or ceiling on some seed shows no spread
    there, so it is left out while another reference is not."""
    payload = payload_from(data)
    variances, clipped = [], []
    for ref, rec in sorted(data["tasks"][task].get("references", {}).items()):
        run = rec.get("reported") or {}
        if not run or not run.get("val"):
            continue
        xs = list(paired_seed_scores(payload, task, run["steps"], {int(s): v for s, v in run["val"].items()}).values())
        if len(xs) < 2:
            continue
        m = sum(xs) / len(xs)
        var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
        (clipped if any(x <= FLOOR or x >= CEILING for x in xs) else variances).append(var)
    use = variances or clipped
    return math.sqrt(sum(use) / len(use)) if use else None


def rechoose(data: dict, rho: float = RHO) -> None:
    """Re-pick AdamW's `chosen` lr of every stored horizon with `protocol.pick` at the task's delta
    (a horizon with weight-decay runs keeps the lr they were measured at)."""
    for t in data["tasks"].values():
        res = task_resolution(t, rho)
        chosen = t["adamw"].setdefault("chosen", {})
        for horizon in sorted({int(r["horizon"]) for r in t["adamw"]["runs"]}):
            runs = [r for r in runs_at(t, horizon)]
            if not runs or any(run_wd(r) > 0 and int(r["horizon"]) == horizon for r in t["adamw"]["runs"]):
                continue  # weight-decay runs were measured at this horizon's chosen lr: it stays
            seeds = seeds_of(runs[0])
            delta = resolution(res["best_loss"], res["seed_bests"], res["rho"], len(seeds)) if res["best_loss"] is not None else 0.0
            chosen[str(horizon)] = pick({int(r["h"]): outcomes_of(r, seeds) for r in runs if "h" in r}, delta)


def add_statistics(data: dict, rho: float = RHO) -> dict:
    """Format 2: resolution and sigma per task, AdamW's chosen lrs by the delta rule, the table."""
    data["rho"] = max(float(rho), RHO_FLOOR)
    rechoose(data, rho)
    for name, t in data["tasks"].items():
        t["resolution"] = task_resolution(t, rho)
        t["resolution"]["delta"] = task_delta(data, name, len(data.get("report_seeds") or [1]))
    for name, t in data["tasks"].items():
        t["sigma"] = measure_sigma(data, name)
    data["format"] = FORMAT
    data["score_version"] = SCORE_VERSION
    data["table"] = reference_table(data)
    return data


def upgrade(data: Mapping[str, Any], rho: float = RHO) -> dict:
    """A format-1 file as format 2, from its stored per-seed curves (no training runs)."""
    if data.get("format") not in (1, FORMAT):
        raise BaselineError(f"cannot upgrade baseline format {data.get('format')!r}; rebuild them")
    out = json.loads(json.dumps(data))
    out.setdefault("machine", {"note": "built before the machine was recorded (format 1)"})
    out["upgraded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return add_statistics(out, rho)


def _scored_run(data: Mapping[str, Any], task: str, ref: str) -> tuple[dict | None, bool]:
    """(the run record to score on the report seeds, whether selection failed)."""
    t = data["tasks"][task]
    sel = [str(s) for s in data["selection_seeds"]]
    if ref != "adamw":
        rec = t["references"].get(ref)
        if not rec:
            return None, True
        return rec.get("reported") or None, False
    runs = [r for r in runs_at(t, t["T"]) if all(s in r["val"] for s in sel)]
    if not runs:
        return None, True
    res = t.get("resolution") or task_resolution(t, data.get("rho") or RHO)
    delta = resolution(res["best_loss"], res["seed_bests"], res["rho"], len(sel)) if res["best_loss"] is not None else 0.0
    by_h = {i: outcomes_of(r, [int(x) for x in sel]) for i, r in enumerate(runs)}
    best = runs[pick(by_h, delta)]
    failed = any(best["diverged"][x] for x in sel)
    return best, failed


def reference_table(data: Mapping[str, Any]) -> dict[str, dict]:
    """Each reference scored like a candidate on fresh seeds: lr picked on the selection seeds
    (the full grid), scored on the report seeds. {ref: {"tasks": {task: {...}}, "seeds": [...], **aggregate}}.

    Every row is scored on the same seeds: the report seeds that every reference was run on (report
    seeds added after the references were tuned have AdamW's curves only).
    """
    rep = [int(s) for s in data["report_seeds"]]
    reported = [r.get("reported") or {} for t in data["tasks"].values() for r in t.get("references", {}).values()]
    rep = [s for s in rep if all(str(s) in (r.get("val") or {}) for r in reported if r)] or rep
    payload = payload_from(data)
    refs = ["adamw"] + sorted({r for t in data["tasks"].values() for r in t.get("references", {})})
    table: dict[str, dict] = {}
    for ref in refs:
        scores, rows, hws = {}, {}, {}
        for name, t in data["tasks"].items():
            run, failed = _scored_run(data, name, ref)
            # a build with fewer seeds scores on the report seeds it has (all of them if it has none)
            have = [s for s in rep if run and str(s) in run["val"]] or ([int(s) for s in run["val"]] if run else rep)
            curves, _ = adamw_curves(payload, name, have)
            div = failed or run is None or any(run["diverged"].get(str(s), True) for s in have)
            val = [] if div else mean_curve([[math.inf if v is None else v for v in run["val"][str(s)]] for s in have])
            ts = task_score(run["steps"] if run else [], val, curves, int(t["T"]), diverged=div,
                            delta=task_delta(payload, name, len(have)))
            scores[name] = ts.score
            hws[name] = half_width(task_sigma(payload, name), len(have))
            rows[name] = {
                "score": round(ts.score, 4),
                "hw": None if hws[name] is None else round(hws[name], 4),
                "lr": run["lr"] if run else None,
                "best_val": ts.best_val if math.isfinite(ts.best_val) else None,
                "adamw_val": ts.adamw_val if math.isfinite(ts.adamw_val) else None,
                "flags": list(ts.flags),
            }
        table[ref] = {"tasks": rows, "seeds": rep, **aggregate(scores, hws)}
    return table
