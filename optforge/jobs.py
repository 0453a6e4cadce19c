"""The engine's unit of work: one evaluation of one candidate, at a stage or for a rollout, with its
cache key and the keyword arguments of its request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from optforge import funnel as funnel_lib
from optforge import rollouts as rollout_lib
from optforge.config import RunConfig, StageConfig
from optforge.result_cache import ResultCache
from optforge.store import EvaluationRecord, RequestKey, RolloutRecord, Store
from optforge.types import Candidate


@dataclass
class Job:
    seq: int  # the strategy's proposal order (search), the store's seq (funnel): scheduling order
    candidate: Candidate
    stage: StageConfig
    search: bool
    key: RequestKey
    request: dict[str, Any]  # make_request's keyword arguments
    rollout: RolloutRecord | None = None
    attempts: int = 0

    @property
    def rollout_id(self) -> int | None:
        return None if self.rollout is None else self.rollout.id


def stage_job(config: RunConfig, cache: ResultCache, seq: int, cand: Candidate, stage: StageConfig, *,
              search: bool) -> Job:
    """The evaluation of `cand` at `stage`, on the stage's suite and seeds."""
    suite, seeds, tune_wd = funnel_lib.resolve_stage(stage, config)
    key = cache.key(cand.content_hash, stage.name, suite, seeds, tune_wd=tune_wd)
    return Job(seq, cand, stage, search, key, dict(source=cand.source, stage=stage.name, suite=suite, seeds=seeds,
                                                   sandbox=config.sandbox.request_dict(), tune_wd=tune_wd))


def rollout_job(config: RunConfig, cache: ResultCache, store: Store, seq: int, r: RolloutRecord,
                suite_tasks: tuple[str, ...]) -> Job:
    """The evaluation a stored rollout asked for: its tasks and seeds, the lr reused or tuned on them."""
    stage = next(s for s in config.search_stages() if s.name == r.stage)
    cand = store.candidate(r.candidate_id)
    base = stage_job(config, cache, seq, cand, stage, search=True)
    key = cache.key(cand.content_hash, r.stage, base.key.suite, json.dumps(list(r.seeds)), tasks=r.tasks,
                    detail=r.detail, tune_wd=base.key.tune_wd, reuse_lr=r.reuse_lr)
    request = {**base.request, "seeds": tuple(r.seeds), "detail": r.detail}
    if r.tasks is not None:
        request["tasks"] = tuple(r.tasks)
    if r.reuse_lr:
        first = store.evaluation(cand.id, r.stage)
        request["lr_multipliers"] = rollout_lib.lr_multipliers(first.metrics, r.tasks or suite_tasks)
    return Job(seq, cand, stage, True, key, request, rollout=r)


def cost_class(stage: str, *, rollout: bool, tasks: tuple[str, ...] | None = None, seeds: tuple[int, ...] = (),
               reuse_lr: bool | None = False) -> tuple:
    """What an evaluation's CPU cost is estimated from (`budgets.CpuEstimates`): its stage, and for a
    rollout its shape (how many tasks, all of them when None; how many seeds; the lr reused or tuned)."""
    if not rollout:
        return (stage,)
    return (stage, None if tasks is None else len(tasks), len(seeds), bool(reuse_lr))


def job_cost_class(job: Job) -> tuple:
    r = job.rollout
    if r is None:
        return cost_class(job.stage.name, rollout=False)
    return cost_class(job.stage.name, rollout=True, tasks=r.tasks, seeds=r.seeds, reuse_lr=r.reuse_lr)


def row_cost_class(ev: EvaluationRecord) -> tuple:
    return cost_class(ev.stage, rollout=ev.rollout_id is not None, tasks=ev.tasks, seeds=ev.seeds, reuse_lr=ev.reuse_lr)


def own_row(store: Store, job: Job) -> EvaluationRecord | None:
    """The job's result already stored (a resumed run), if any: its rollout's row, or the stage evaluation."""
    if job.rollout is not None:
        rows = [e for e in store.evaluations(rollout_id=job.rollout.id) if e.status.cacheable]
        return rows[-1] if rows else None
    ev = store.evaluation(job.candidate.id, job.stage.name)
    return ev if ev is not None and ev.status.cacheable else None
