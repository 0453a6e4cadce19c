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
    RHO, adamw_curves, chosen_run, paired_seed_scores, pick_seeds, task_delta, task_resolution, task_sigma,
)
from optforge.evaluators.scoring import CEILING, FLOOR, SCORE_VERSION, RHO_FLOOR, aggregate, half_width, mean_curve, task_score


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


def rechoose(data: dict) -> None:
    """Re-pick AdamW's `chosen` lr of every stored horizon on the selection seeds (`lookup.chosen_run`).

    A horizon whose weight-decay runs were measured at another lr (a build that picked on more seeds)
    keeps those runs; `files.check` names the horizons and `--add-wd` measures the missing ones."""
    for name, t in data["tasks"].items():
        chosen = t["adamw"].setdefault("chosen", {})
        for horizon in sorted({int(r["horizon"]) for r in t["adamw"]["runs"]}):
            run = chosen_run(data, name, horizon)
            if run is not None:
                chosen[str(horizon)] = int(run["h"])


def add_statistics(data: dict, rho: float = RHO) -> dict:
    """Format 2: resolution and sigma per task, AdamW's chosen lrs by the delta rule, the table; all of
    AdamW's side on the selection seeds (`lookup.pick_seeds`)."""
    data["rho"] = max(float(rho), RHO_FLOOR)
    for name, t in data["tasks"].items():
        t["resolution"] = task_resolution(t, rho, data.get("selection_seeds"))
        t["resolution"]["delta"] = task_delta(data, name, len(data.get("report_seeds") or [1]))
    rechoose(data)
    for name, t in data["tasks"].items():
        t["sigma"] = measure_sigma(data, name)
    data["format"] = FORMAT
    data["score_version"] = SCORE_VERSION
    data["table"] = reference_table(data)
    return data


def upgrade(data: Mapping[str, Any], rho: float = RHO) -> dict:
    """A format-1 file as format 2, or a format-2 file with its statistics recomputed by this optforge,
    from its stored per-seed curves (no training runs)."""
    if data.get("format") not in (1, FORMAT):
        raise BaselineError(f"cannot upgrade baseline format {data.get('format')!r}; rebuild them")
    out = json.loads(json.dumps(data))
    if data.get("format") == 1:  # the build's machine stays unrecorded: format 1 did not record it
        out["upgraded"] = {"from_format": 1, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return add_statistics(out, rho)


def _scored_run(data: Mapping[str, Any], task: str, ref: str) -> tuple[dict | None, bool]:
    """(the run record to score on the report seeds, whether selection failed)."""
    t = data["tasks"][task]
    if ref != "adamw":
        rec = t["references"].get(ref)
        if not rec:
            return None, True
        return rec.get("reported") or None, False
    best = chosen_run(data, task, t["T"])
    if best is None:
        return None, True
    return best, any(best["diverged"].get(str(s), True) for s in pick_seeds(data["selection_seeds"], [best]))


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
