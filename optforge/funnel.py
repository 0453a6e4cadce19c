"""The promotion funnel (issue 9): which candidates enter each stage and which pass its bar.

Stages, in order (each configurable in `stages`):
- `smoke`: the bar is status `ok` (the engine only sends `ok` smoke results on to `train`);
- `train`: search fitness (what the strategy climbs; no bar, it ranks);
- `train_fresh_seeds`: the top-k `train` candidates re-run on fresh seeds;
- `heldout`: the survivors on the held-out suite, tuning weight decay for candidate and AdamW alike;
- then `promoted`.

The bar of the last two: the candidate's metric (`funnel.metric`, robust fitness by default) must beat
the same metric of a reference seed (`funnel.reference`, AdamW by default) at the same stage by more
than the measured seed noise, with no task diverged. The noise is measured, not assumed: the seed
`funnel.noise_seed` (AdamW) scored against tuned AdamW on the stage's fresh seeds should be 0, so its
deviation is noise: max(|F|, rms of its per-task scores / sqrt(#tasks), funnel.min_margin).

Strategies never see funnel results; the engine only delivers search stages to them. The train vs
held-out correlation (Lion's meta-overfitting check) is computed by `correlation`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from optforge import seeds as seed_lib
from optforge.config import STAGE_NAMES, RunConfig, StageConfig
from optforge.store import EvaluationRecord, Promotion, Store
from optforge.types import FLOOR, Candidate, content_hash

PROMOTED = "promoted"


def stage_index(name: str) -> int:
    return STAGE_NAMES.index(name)


def resolve_stage(stage: StageConfig, config: RunConfig) -> tuple[str, str, bool]:
    """(suite, seeds, tune_wd) of a stage, filling the stage defaults."""
    default_suite = {"smoke": "smoke", "train": config.suite, "train_fresh_seeds": config.suite, "heldout": "heldout"}
    default_seeds = {"smoke": "selection", "train": "selection", "train_fresh_seeds": "fresh", "heldout": "fresh"}
    tune_wd = stage.tune_wd if stage.tune_wd is not None else stage.name == "heldout"
    return stage.suite or default_suite[stage.name], stage.seeds or default_seeds[stage.name], tune_wd


def reference_candidates(config: RunConfig) -> list[Candidate]:
    """The seeds the bars are measured with, as candidates with fixed ids (`ref-<seed>`)."""
    names = list(dict.fromkeys([config.funnel.reference, config.funnel.noise_seed]))
    out = []
    for name in names:
        src = seed_lib.source(name)
        out.append(Candidate(id=f"ref-{name}", source=src, strategy="funnel", note={"role": "reference", "seed": name},
                             content_hash=content_hash(src), created=time.time()))
    return out


def entrants(stage: StageConfig, store: Store, config: RunConfig) -> list[Candidate]:
    """Who enters `stage`: the top-k `ok` train candidates, or the survivors of the stage before."""
    if stage.name == "train_fresh_seeds":
        k = stage.top_k or config.funnel.top_k
        ranked = [r for r in store.leaderboard("train") if r.evaluation.ok]
        return [r.candidate for r in ranked[:k]]
    before = STAGE_NAMES[stage_index(stage.name) - 1]
    passed = [p.candidate_id for p in store.promotions(before) if p.passed]
    return [store.candidate(cid) for cid in passed]


def metric_value(ev: EvaluationRecord | None, metric: str) -> float:
    """The compared number: `metric` of an ok result, the floor otherwise."""
    if ev is None or not ev.ok:
        return FLOOR
    value = ev.metrics.get(metric, ev.fitness)
    return float(value) if value is not None and math.isfinite(float(value)) else FLOOR


def diverged_tasks(ev: EvaluationRecord) -> list[str]:
    tasks = ev.metrics.get("tasks") or {}
    return sorted(t for t, m in tasks.items() if "diverged" in (m.get("flags") or []))


def seed_noise(ev: EvaluationRecord | None, min_margin: float) -> float:
    """How far tuned AdamW's own score strays from 0 on these seeds: the noise a winner must clear."""
    if ev is None or not ev.ok:
        return math.inf
    scores = [float(m["score"]) for m in (ev.metrics.get("tasks") or {}).values() if m.get("score") is not None]
    rms = math.sqrt(sum(s * s for s in scores) / len(scores)) / math.sqrt(len(scores)) if scores else 0.0
    return max(min_margin, abs(ev.fitness), rms)


def decide(stage: StageConfig, store: Store, config: RunConfig, cands: list[Candidate]) -> list[Promotion]:
    """Pass/fail of each entrant at `stage` against the reference bar (all evaluations are stored)."""
    f = config.funnel
    ref_ev = store.evaluation(f"ref-{f.reference}", stage.name)
    noise_ev = store.evaluation(f"ref-{f.noise_seed}", stage.name)
    noise = seed_noise(noise_ev, f.min_margin)
    ref_value = metric_value(ref_ev, f.metric)
    bar = ref_value + noise
    out = []
    for cand in cands:
        ev = store.evaluation(cand.id, stage.name)
        value = metric_value(ev, f.metric)
        detail: dict[str, Any] = {"metric": f.metric, "reference": f.reference, "reference_value": ref_value}
        if ev is None or not ev.ok:
            passed, detail["why"] = False, f"status {ev.status.value if ev else 'missing'} at {stage.name}"
        elif not math.isfinite(bar):
            passed, detail["why"] = False, f"the bar could not be measured: reference '{f.noise_seed}' failed"
        elif diverged_tasks(ev):
            passed, detail["why"] = False, f"diverged on {', '.join(diverged_tasks(ev))}"
        else:
            passed = value > bar
            detail["why"] = f"{f.metric} {value:+.3f} {'>' if passed else '<='} bar {bar:+.3f}"
        out.append(Promotion(cand.id, stage.name, passed, value, bar if math.isfinite(bar) else None,
                             noise if math.isfinite(noise) else None, detail))
    return out


def record_promoted(store: Store, config: RunConfig) -> list[str]:
    """Mark the survivors of the last funnel stage as promoted; store the meta-overfitting check."""
    stages = config.funnel_stages()
    if not stages:
        return []
    last = stages[-1].name
    promoted = []
    for p in store.promotions(last):
        if p.passed:
            store.add_promotion(Promotion(p.candidate_id, PROMOTED, True, p.value, p.bar, p.noise, {"after": last}))
            promoted.append(p.candidate_id)
    store.set_meta(correlation=correlation(store))
    return promoted


def correlation(store: Store, a: str = "train", b: str = "heldout") -> dict[str, Any]:
    """Pearson and Spearman correlation of fitness at stages `a` and `b` over candidates with both."""
    at_b = {e.candidate_id: e for e in store.evaluations(stage=b)}
    pairs = [(e.candidate_id, e.fitness, at_b[e.candidate_id].fitness) for e in store.evaluations(stage=a)
             if e.candidate_id in at_b]
    xs, ys = [p[1] for p in pairs], [p[2] for p in pairs]
    return {"stages": [a, b], "n": len(pairs), "pearson": _pearson(xs, ys), "spearman": _pearson(_ranks(xs), _ranks(ys)),
            "pairs": [{"candidate": c, a: x, b: y} for c, x, y in pairs]}


def funnel_counts(store: Store, config: RunConfig) -> dict[str, int]:
    """How many candidates (references excluded) reached an ok result / passed, per stage."""
    refs = {c.id for c in store.candidates() if c.note.get("role") == "reference"}
    counts: dict[str, int] = {"proposed": len([c for c in store.candidates() if c.id not in refs])}
    for stage in config.stages:
        if stage.name in ("smoke", "train"):
            counts[stage.name] = len([e for e in store.evaluations(stage=stage.name) if e.ok and e.candidate_id not in refs])
        else:
            counts[stage.name] = len([p for p in store.promotions(stage.name) if p.passed and p.candidate_id not in refs])
    if config.funnel_stages():
        counts[PROMOTED] = len([p for p in store.promotions(PROMOTED) if p.passed])
    return counts


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)
