"""Checking and resolving a strategy's `Rollout` request before it is stored.

A rollout runs on the search suite only: a subset of its tasks, and seeds from its search-seed pool
(`Suite.search_seeds`). Held-out tasks and report seeds can never be requested; the refusal says
which one was asked for. A refused rollout is stored as asked with the reason (`refused_record`)
and handed back to the strategy as an `invalid` result (`refusal`); the run goes on. A repeat's new
seeds are picked here (the lowest search seeds the candidate has not used), so the stored request
is exact and a resume runs the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping

from optforge.search.base import DETAILS, Rollout
from optforge.store import RolloutRecord, Store
from optforge.types import EvaluationResult, Status


class RolloutRefused(ValueError):
    """A strategy asked for an evaluation it may not have; the message says what and why."""


@dataclass(frozen=True)
class SearchSuite:
    """What a rollout may use: the search suite's task names and search seeds, and what it never may."""

    name: str
    tasks: tuple[str, ...]
    search_seeds: tuple[int, ...]
    report_seeds: tuple[int, ...] = ()
    heldout_tasks: frozenset[str] = frozenset()

    @classmethod
    def of(cls, suite: Any, heldout: Any = None) -> "SearchSuite":
        """From evaluator `Suite`s (a suite without `search_seeds` has an empty pool)."""
        return cls(suite.name, tuple(t.name for t in suite.tasks), tuple(getattr(suite, "search_seeds", ()) or ()),
                   tuple(suite.report_seeds), frozenset(t.name for t in heldout.tasks) if heldout else frozenset())


def search_suite_for(config: Any) -> SearchSuite:
    """The run's search suite (its `train` stage's) with the installed held-out suite's task names."""
    from optforge.evaluators.tasks import get_suite
    from optforge.funnel import resolve_stage

    stages = config.search_stages()
    train = next((s for s in stages if s.name == "train"), stages[-1])
    suite = get_suite(resolve_stage(train, config)[0])
    try:
        heldout = get_suite("heldout")
    except Exception:  # noqa: BLE001 - no held-out suite installed: nothing more to refuse by name
        heldout = None
    return SearchSuite.of(suite, heldout)


def lr_multipliers(train_metrics: Mapping[str, Any], tasks: Collection[str]) -> dict[str, float]:
    """Each task's lr multiplier from a candidate's first `train` result (`metrics["tasks"][t]["lr_mult"]`)."""
    per = train_metrics.get("tasks") or {}
    missing = [t for t in tasks if not isinstance((per.get(t) or {}).get("lr_mult"), (int, float))]
    if missing:
        raise RolloutRefused(f"reuse_lr: the first train result has no lr multiplier for {', '.join(missing)}; "
                             "ask without reuse_lr to tune the lr on the rollout's seeds")
    return {t: float(per[t]["lr_mult"]) for t in tasks}


def resolve(rollout: Rollout, *, pseq: int, stage: str, store: Store, suite: SearchSuite,
            reserved: Collection[int] = (), tunes_wd: bool = False) -> RolloutRecord:
    """The stored form of `rollout`, or RolloutRefused. `reserved`: seeds taken by earlier rollouts of
    the same candidate in this batch, not stored yet; `tunes_wd`: the stage tunes weight decay."""
    cid = rollout.candidate_id
    head = store.evaluation(cid, stage) if _known(store, cid) else None
    if head is None or cid not in store.observed_ids() or not head.ok:
        raise RolloutRefused(f"rollout of '{cid}': only a candidate the strategy has observed with an ok {stage} "
                             "result can be rolled out")
    if rollout.detail not in DETAILS:
        raise RolloutRefused(f"rollout of '{cid}': detail {rollout.detail!r}; use one of {', '.join(DETAILS)}")
    tasks = None if rollout.tasks is None else tuple(rollout.tasks)
    for t in tasks or ():
        if t in suite.heldout_tasks and t not in suite.tasks:
            raise RolloutRefused(f"rollout of '{cid}': task '{t}' is held out; held-out tasks can never be requested")
        if t not in suite.tasks:
            raise RolloutRefused(f"rollout of '{cid}': task '{t}' is not in search suite '{suite.name}' "
                                 f"({', '.join(suite.tasks)})")
    if tasks is not None and (not tasks or len(set(tasks)) != len(tasks)):
        raise RolloutRefused(f"rollout of '{cid}': tasks {list(tasks)} must be distinct and not empty")
    seeds = _seeds(rollout, store, suite, reserved)
    if rollout.reuse_lr:
        if tunes_wd:
            raise RolloutRefused(f"rollout of '{cid}': reuse_lr tunes nothing, and stage '{stage}' tunes weight decay; "
                                 "ask without reuse_lr")
        lr_multipliers(head.metrics, tasks or suite.tasks)
    return RolloutRecord(id=0, pseq=pseq, candidate_id=cid, stage=stage, tasks=tasks, seeds=seeds,
                         reuse_lr=bool(rollout.reuse_lr), detail=rollout.detail, repeat=rollout.is_repeat,
                         note=dict(rollout.note))


def _known(store: Store, cid: str) -> bool:
    try:
        return store.candidate(cid).id == cid
    except KeyError:
        return False


def _seeds(rollout: Rollout, store: Store, suite: SearchSuite, reserved: Collection[int]) -> tuple[int, ...]:
    cid = rollout.candidate_id
    if bool(rollout.seeds) == bool(rollout.new_seeds):
        raise RolloutRefused(f"rollout of '{cid}': give either seeds (search seeds) or new_seeds (a repeat), not "
                             "both or neither")
    if rollout.new_seeds:
        used = {s for r in store.rollouts(cid) for s in r.seeds} | set(reserved)
        fresh = [s for s in suite.search_seeds if s not in used]
        if len(fresh) < rollout.new_seeds:
            raise RolloutRefused(f"repeat of '{cid}': {rollout.new_seeds} new search seeds asked, {len(fresh)} left "
                                 f"of suite '{suite.name}''s {len(suite.search_seeds)}")
        return tuple(fresh[:rollout.new_seeds])
    seeds = tuple(int(s) for s in rollout.seeds)
    for s in seeds:
        if s in suite.report_seeds:
            raise RolloutRefused(f"rollout of '{cid}': seed {s} is a report seed; report seeds can never be requested")
        if s not in suite.search_seeds:
            raise RolloutRefused(f"rollout of '{cid}': seed {s} is not a search seed of suite '{suite.name}' "
                                 f"({list(suite.search_seeds)})")
    if len(set(seeds)) != len(seeds):
        raise RolloutRefused(f"rollout of '{cid}': seeds {list(seeds)} repeat a seed")
    return seeds


def refused_record(rollout: Rollout, *, pseq: int, stage: str, reason: str) -> RolloutRecord:
    """The stored form of a refused request: what was asked (a repeat's seeds were never picked) and why."""
    return RolloutRecord(id=0, pseq=pseq, candidate_id=rollout.candidate_id, stage=stage,
                         tasks=None if rollout.tasks is None else tuple(rollout.tasks),
                         seeds=tuple(int(s) for s in rollout.seeds), reuse_lr=bool(rollout.reuse_lr),
                         detail=str(rollout.detail), repeat=rollout.is_repeat, note=dict(rollout.note), refused=reason)


def refusal(r: RolloutRecord) -> EvaluationResult:
    """What the strategy gets back for a refused rollout: status `invalid` ("failed a check"), the reason
    as its feedback and in `artifacts["refused"]`. Nothing was evaluated and no row is stored."""
    return EvaluationResult.failure(Status.INVALID, f"rollout refused: {r.refused}", stage=r.stage,
                                    refused=r.refused)


def as_rollout(r: RolloutRecord) -> Rollout:
    """The strategy's view of a stored rollout: what it asked for, seeds resolved, with its id."""
    return Rollout(r.candidate_id, tasks=r.tasks, seeds=r.seeds, reuse_lr=r.reuse_lr, detail=r.detail, note=r.note,
                   id=r.id)
