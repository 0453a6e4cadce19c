"""The promotion funnel: which candidates enter each stage and which pass its bar.

Stages, in order (each configurable in `stages`):
- `smoke`: the bar is status `ok` (the engine only sends `ok` smoke results on to `train`);
- `train`: search fitness (what the strategy climbs; no bar, it ranks);
- `train_fresh_seeds`: the top-k `train` candidates re-run on fresh seeds;
- `heldout`: the survivors on the held-out suite, tuning weight decay for candidate and AdamW alike;
- then `promoted`.

The bar of the last two is a significance test, as the modded-nanogpt record track uses: for each
fresh seed s, d_s is the candidate's mean over tasks of its paired score against tuned AdamW on that
same seed (`metrics["seed_fitness"]`), AdamW's lr and weight decay picked on the selection seeds only
(`baselines.selected_runs`). The candidate is promoted when a one-sided paired t-test of
{d_s} > 0 gives p < `funnel.alpha` (default 0.01), with no task diverged (the sd of d_s is taken
as at least SD_FLOOR = 0.01, so float noise is never significant). `funnel.fresh_seeds` (the
first N report seeds) defaults to the N that gives 80 % power for a +0.25 effect at that alpha,
computed from the stage suite's sigma_task (`fresh_seeds_for_power`), capped at the suite's report
seeds with a warning that states the power left. The reference seed
(`funnel.reference`, AdamW) still runs at each stage, for comparison only.

Strategies never see funnel results; the engine only delivers search stages to them. The train vs
held-out correlation (Lion's meta-overfitting check) is computed by `correlation`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from optforge import seeds as seed_lib
from optforge.config import FUNNEL_STAGES, STAGE_NAMES, RunConfig, StageConfig
from optforge.store import EvaluationRecord, Promotion, Store
from optforge.types import FLOOR, Candidate, content_hash

PROMOTED = "promoted"
log = logging.getLogger(__name__)


def stage_index(name: str) -> int:
    return STAGE_NAMES.index(name)


EFFECT = 0.25
"""The effect (mean paired score, log2 speedup) the default number of fresh seeds detects with POWER."""
POWER = 0.8
SIGMA_FALLBACK = 0.5
"""sigma_task assumed for a task whose baselines carry none (no references measured): conservative;
the committed train suite's sigma_task lie in 0.08..0.63."""


def seed_sd(sigmas: list[float | None]) -> float:
    """The sd of d_s (mean of the per-task paired scores on one seed), tasks taken as independent."""
    xs = [SIGMA_FALLBACK if s is None else float(s) for s in sigmas]
    return math.sqrt(sum(x * x for x in xs)) / len(xs) if xs else SIGMA_FALLBACK


def power(n: int, sd: float, alpha: float, effect: float = EFFECT) -> float:
    """The power of the one-sided one-sample t-test on n values of sd `sd` to detect mean `effect`."""
    from scipy import stats

    if n < 2 or sd <= 0:
        return 0.0 if n < 2 else 1.0
    df = n - 1
    return float(stats.nct.sf(stats.t.isf(alpha, df), df, effect / (sd / math.sqrt(n))))


def fresh_seeds_for_power(sigmas: list[float | None], alpha: float, effect: float = EFFECT,
                          target: float = POWER, most: int = 64) -> int:
    """The fewest fresh seeds (>= 2) whose t-test has `target` power for `effect` at `alpha`."""
    sd = seed_sd(sigmas)
    return next((n for n in range(2, most + 1) if power(n, sd, alpha, effect) >= target), most)


@functools.lru_cache(maxsize=None)
def _suite_sigmas(suite: str) -> tuple[float | None, ...]:
    from optforge.evaluators.baselines import load

    data = load(suite)
    return tuple(t.get("sigma") for t in data["tasks"].values())


def fresh_seed_count(suite: str, config: RunConfig) -> int | None:
    """N of a promotion stage: `funnel.fresh_seeds`, or the power calculation on the suite's sigmas
    (capped at the suite's report seeds); None when the suite or its baselines cannot be read."""
    if config.funnel.fresh_seeds is not None:
        return config.funnel.fresh_seeds
    from optforge.evaluators.tasks import get_suite

    try:
        have = len(get_suite(suite).report_seeds)
        sigmas = list(_suite_sigmas(suite))
    except Exception:  # noqa: BLE001 - unknown suite or no baselines yet: the evaluation itself will say so
        return None
    n = fresh_seeds_for_power(sigmas or [None], config.funnel.alpha)
    if n > have:
        _warn_underpowered(suite, n, have, power(have, seed_sd(sigmas), config.funnel.alpha))
        n = have
    return n


@functools.lru_cache(maxsize=None)
def _warn_underpowered(suite: str, want: int, have: int, achieved: float) -> None:
    log.warning("suite '%s' has %d report seeds; 80 %% power for a +%.2f effect needs %d, so promotion on it has "
                "%.0f %% power. Give the suite more report seeds (a new version), then add AdamW's runs on them: "
                "`optforge baselines --suite %s --add-seeds`.",
                suite, have, EFFECT, want, 100 * achieved, suite)


def resolve_stage(stage: StageConfig, config: RunConfig) -> tuple[str, str, bool]:
    """(suite, seeds, tune_wd) of a stage, filling the stage defaults. Promotion stages score on the
    first N report seeds: seeds "fresh:N" (`fresh_seed_count`)."""
    default_suite = {"smoke": "smoke", "train": config.suite, "train_fresh_seeds": config.suite, "heldout": "heldout"}
    default_seeds = {"smoke": "selection", "train": "selection", "train_fresh_seeds": "fresh", "heldout": "fresh"}
    tune_wd = stage.tune_wd if stage.tune_wd is not None else stage.name == "heldout"
    suite = stage.suite or default_suite[stage.name]
    seeds = stage.seeds or default_seeds[stage.name]
    n = fresh_seed_count(suite, config) if seeds == "fresh" and stage.name in FUNNEL_STAGES else None
    if n is not None:
        seeds = f"fresh:{n}"
    return suite, seeds, tune_wd


def run_suites(config: RunConfig) -> list[str]:
    """Every suite a run scores on (its stages'), for the start-of-run baselines check."""
    return list(dict.fromkeys(resolve_stage(stage, config)[0] for stage in config.stages))


def reference_candidates(config: RunConfig) -> list[Candidate]:
    """The reference seed run at each promotion stage for comparison, as a candidate `ref-<seed>`."""
    name = config.funnel.reference
    src = seed_lib.source(name)
    return [Candidate(id=f"ref-{name}", source=src, strategy="funnel", note={"role": "reference", "seed": name},
                      content_hash=content_hash(src), created=time.time())]


def entrants(stage: StageConfig, store: Store, config: RunConfig) -> list[Candidate]:
    """Who enters `stage`: the top-k `ok` train candidates, or the survivors of the stage before."""
    if stage.name == "train_fresh_seeds":
        k = stage.top_k or config.funnel.top_k
        ranked = [r for r in store.leaderboard("train") if r.evaluation.ok]
        return [r.candidate for r in ranked[:k]]
    before = STAGE_NAMES[stage_index(stage.name) - 1]
    passed = [p.candidate_id for p in store.promotions(before) if p.passed]
    return [store.candidate(cid) for cid in passed]


def diverged_tasks(ev: EvaluationRecord) -> list[str]:
    tasks = ev.metrics.get("tasks") or {}
    return sorted(t for t, m in tasks.items() if "diverged" in (m.get("flags") or []))


@dataclass(frozen=True)
class TTest:
    """A one-sided one-sample t-test of mean(d) > 0: n values, their mean and sd, t and p."""

    n: int
    mean: float
    sd: float
    t: float
    p: float

    def bar(self, alpha: float) -> float:
        """The mean d this sd and n needed for p < alpha."""
        from scipy import stats

        return float(stats.t.isf(alpha, self.n - 1)) * self.sd / math.sqrt(self.n) if self.n >= 2 else math.inf


SD_FLOOR = 0.01
"""The least sd of d_s the t-test uses (log2 units: 0.7 % of the steps). Copies of AdamW give d_s of
1e-7 with an sd of 1e-7, whose t can be anything; a spread below this is float noise, not evidence."""


def paired_t_test(d: list[float], sd_floor: float = SD_FLOOR) -> TTest:
    """One-sided t-test of the per-seed paired differences d_s against 0 (H1: mean > 0), with the
    sd taken as at least `sd_floor`. Raises ValueError with fewer than 2 values."""
    from scipy import stats

    n = len(d)
    if n < 2:
        raise ValueError(f"a t-test needs at least 2 seeds, got {n}")
    mean = sum(d) / n
    sd = max(math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)), sd_floor)
    t = mean / (sd / math.sqrt(n))
    return TTest(n, mean, sd, t, float(stats.t.sf(t, n - 1)))


def seed_differences(ev: EvaluationRecord) -> list[float]:
    """d_s of an evaluation, in seed order."""
    per = ev.metrics.get("seed_fitness") or {}
    return [float(per[k]) for k in sorted(per, key=int)]


def decide(stage: StageConfig, store: Store, config: RunConfig, cands: list[Candidate]) -> list[Promotion]:
    """Pass/fail of each entrant at `stage`: the paired t-test of its d_s at `funnel.alpha`."""
    alpha = config.funnel.alpha
    out = []
    for cand in cands:
        ev = store.evaluation(cand.id, stage.name)
        detail: dict[str, Any] = {"statistic": "one-sided paired t-test on d_s (mean paired score per fresh seed)",
                                  "alpha": alpha}
        value, bar, sd = FLOOR, None, None
        d = seed_differences(ev) if ev is not None and ev.ok else []
        if ev is None or not ev.ok:
            passed, detail["why"] = False, f"status {ev.status.value if ev else 'missing'} at {stage.name}"
        elif diverged_tasks(ev):
            passed, detail["why"] = False, f"diverged on {', '.join(diverged_tasks(ev))}"
        elif len(d) < 2:
            passed, detail["why"] = False, f"{len(d)} fresh seed(s) scored; the t-test needs at least 2"
        else:
            test = paired_t_test(d)
            value, sd = test.mean, test.sd
            bar = test.bar(alpha)
            passed = test.p < alpha
            detail.update(d=d, n=test.n, mean=test.mean, sd=test.sd, t=test.t, p=test.p)
            detail["why"] = (f"mean d {test.mean:+.3f} over {test.n} seeds, sd {test.sd:.3f}, t {test.t:.2f}, "
                             f"p {test.p:.3g} {'<' if passed else '>='} alpha {alpha:g}")
        out.append(Promotion(cand.id, stage.name, passed, value, bar if bar is not None and math.isfinite(bar) else None,
                             sd, detail))
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
    """Pearson and Spearman correlation of fitness at stages `a` and `b` over candidates with both (at a
    stage with rollouts, a candidate's task-balanced mean over its rows, `Aggregate`)."""
    def mean(r: Any) -> float:
        return r.evaluation.aggregate.mean if r.evaluation.aggregate else r.evaluation.fitness

    at_b = {r.candidate.id: mean(r) for r in store.leaderboard(b, include_reference=True)}
    pairs = [(r.candidate.id, mean(r), at_b[r.candidate.id])
             for r in sorted(store.leaderboard(a, include_reference=True), key=lambda r: r.evaluation.id)
             if r.candidate.id in at_b]
    xs, ys = [p[1] for p in pairs], [p[2] for p in pairs]
    return {"stages": [a, b], "n": len(pairs), "pearson": _pearson(xs, ys), "spearman": _pearson(_ranks(xs), _ranks(ys)),
            "pairs": [{"candidate": c, a: x, b: y} for c, x, y in pairs]}


def funnel_counts(store: Store, config: RunConfig) -> dict[str, int]:
    """How many candidates (references excluded) reached an ok result / passed, per stage."""
    refs = {c.id for c in store.candidates() if c.note.get("role") == "reference"}
    counts: dict[str, int] = {"proposed": len([c for c in store.candidates() if c.id not in refs])}
    for stage in config.stages:
        if stage.name in ("smoke", "train"):
            counts[stage.name] = len({e.candidate_id for e in store.evaluations(stage=stage.name)
                                      if e.ok and e.rollout_id is None and e.candidate_id not in refs})
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


def run_funnel(store: Store, config: RunConfig, evaluate: Any) -> None:
    """The promotion funnel after the search: for each funnel stage, its entrants and the reference are
    evaluated (`evaluate([(seq, candidate, stage), ...])` returns when all are stored), then decided.
    Evaluations already stored are not asked for again."""
    for stage in config.funnel_stages():
        ins = entrants(stage, store, config)
        if not ins:
            store.add_event("funnel_empty", stage=stage.name)
            break
        refs = reference_candidates(config)
        known = {c.id for c in store.candidates()}
        new_refs = [c for c in refs if c.id not in known]
        if new_refs:
            store.add_proposals(new_refs, None)
        seq_of = {c.id: i for i, c in enumerate(store.candidates())}
        todo = [(seq_of[c.id], store.candidate(c.id), stage) for c in ins + refs
                if store.evaluation(c.id, stage.name) is None]
        evaluate(todo)
        for decision in decide(stage, store, config, ins):
            store.add_promotion(decision)
    if config.funnel_stages():
        record_promoted(store, config)
