"""The records the store hands out (never raw rows), and its JSON encoding.

JSON columns keep NaN, Infinity and -Infinity as such (Python's `json` reads them back), so a
diverged metric stays distinguishable from a missing one. The one exception is `llm_calls.extra`,
which SQLite's own JSON functions read: non-finite numbers there are stored as null.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple

from optforge.types import Candidate, EvaluationResult, Status


@dataclass(frozen=True)
class TaskAggregate:
    """One task's score over the rows that ran it: mean, sample sd (None below 2 rows), n rows."""

    mean: float
    sd: float | None
    n: int


@dataclass(frozen=True)
class Aggregate:
    """A candidate at one stage over all its rows (stage evaluation, rollouts and repeats; `lost`
    rows excluded).

    `mean` is task-balanced: each task's mean over the rows that ran it, then the mean over those
    tasks. Rows on different task subsets (a POLCA minibatch, a MoH subtask, beside the full stage
    row) would otherwise weigh a task by how often it was asked for: a rule run ten times on its one
    good task outranked its own full-suite result. For rows that all ran the same tasks it equals the
    mean of the rows' fitness (the fitness is the mean of the task scores). A failed row counts its
    floor fitness on every task it was asked to run. `sd` and `n` are over the rows' fitness, `seeds`
    the seeds used, `tasks` the per-task breakdown. `missing`: tasks of the stage's full suite that
    no row of this candidate scored (filled by `Store.leaderboard`, which ranks such candidates
    after the complete ones)."""

    mean: float
    sd: float | None
    n: int
    seeds: tuple[int, ...] = ()
    tasks: Mapping[str, TaskAggregate] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    @classmethod
    def of(cls, rows: Iterable["EvaluationRecord"], suite_tasks: Iterable[str] = ()) -> "Aggregate | None":
        """`suite_tasks`: the stage's full task list, for `missing` and for the tasks a failed
        full-suite row stands for (without it: the tasks the other rows ran)."""
        rows = [r for r in rows if r.status is not Status.LOST]
        if not rows:
            return None
        suite_tasks = tuple(suite_tasks)
        scored: dict[str, list[float]] = {}
        for r in rows:
            if r.ok:
                for task, m in (r.metrics.get("tasks") or {}).items():
                    if isinstance(m, Mapping) and m.get("score") is not None:
                        scored.setdefault(task, []).append(float(m["score"]))
        per_task = {t: list(xs) for t, xs in scored.items()}
        for r in rows:
            if not r.ok:
                for task in r.tasks if r.tasks is not None else (suite_tasks or tuple(scored)):
                    per_task.setdefault(task, []).append(r.fitness)
        row_fitness = [r.fitness for r in rows]
        task_means = {t: _mean_sd(xs) for t, xs in sorted(per_task.items())}
        mean = statistics.fmean(m for m, _, _ in task_means.values()) if task_means else statistics.fmean(row_fitness)
        _, sd, n = _mean_sd(row_fitness)
        seeds = tuple(sorted({s for r in rows for s in r.seeds}))
        missing = tuple(t for t in suite_tasks if t not in per_task)
        return cls(mean, sd, n, seeds=seeds, tasks={t: TaskAggregate(*v) for t, v in task_means.items()},
                   missing=missing)


def _mean_sd(xs: list[float]) -> tuple[float, float | None, int]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


@dataclass(frozen=True)
class EvaluationRecord:
    """One stored evaluation row: the `EvaluationResult` fields plus who, when and how it ran.

    `rollout_id` is None for a stage evaluation (the engine's pipeline) and the rollout's id for a
    row a strategy asked for. `aggregate` is filled by `Store.leaderboard` (all rows of the
    candidate at that stage). None in `detail`, `tune_wd`, `reuse_lr`, `score_version`: unknown
    (a row written before schema version 2)."""

    candidate_id: str
    stage: str
    status: Status
    suite: str
    suite_version: str
    seeds: tuple[int, ...]
    seeds_spec: str
    metrics: dict[str, Any]
    artifacts: dict[str, Any]
    feedback: str
    attempts: int = 1
    wall_s: float = 0.0
    cached_from: str | None = None
    created: float = 0.0
    tasks: tuple[str, ...] | None = None
    detail: str | None = None
    tune_wd: bool | None = None
    reuse_lr: bool | None = None
    score_version: int | None = None
    rollout_id: int | None = None
    id: int = 0
    aggregate: Aggregate | None = None

    @property
    def fitness(self) -> float:
        return float(self.metrics.get("fitness", -3.0))

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def result(self) -> EvaluationResult:
        return EvaluationResult(
            status=self.status, stage=self.stage, suite=self.suite, suite_version=self.suite_version,
            seeds=self.seeds, metrics=dict(self.metrics), artifacts=dict(self.artifacts), feedback=self.feedback,
        )


@dataclass(frozen=True)
class RequestKey:
    """What makes two evaluations the same request (the result cache's key): the exact source, the
    stage, the suite and its version, the tasks (None: all), the seeds, the detail level, weight-decay
    tuning, lr reuse and the score version."""

    content_hash: str
    stage: str
    suite: str
    suite_version: str
    seeds_spec: str
    tasks: tuple[str, ...] | None = None
    detail: str = "summary"
    tune_wd: bool = False
    reuse_lr: bool = False
    score_version: int = 1


@dataclass(frozen=True)
class RolloutRecord:
    """A stored rollout request: `seeds` are resolved (a repeat's new seeds picked) before storing."""

    id: int
    pseq: int
    candidate_id: str
    stage: str
    tasks: tuple[str, ...] | None
    seeds: tuple[int, ...]
    reuse_lr: bool
    detail: str
    repeat: bool
    note: dict[str, Any] = field(default_factory=dict)
    observed: bool = False
    created: float = 0.0
    refused: str | None = None  # why the engine refused it (then never evaluated); None: accepted


@dataclass(frozen=True)
class StrategyRecord:
    """An append-only note a strategy kept: a summary, a rejected proposal with its reason, a meta-level
    program with its utility... `kind` is the strategy's word for it; `data` is JSON-able."""

    kind: str
    data: Mapping[str, Any]
    candidate_id: str | None = None
    created: float = 0.0
    id: int = 0


class Ranked(NamedTuple):
    """A candidate with its evaluation at one stage (unpacks as `cand, ev`)."""

    candidate: Candidate
    evaluation: EvaluationRecord


@dataclass(frozen=True)
class Promotion:
    """A funnel decision: did `candidate_id` pass `stage`, with the value compared and the bar."""

    candidate_id: str
    stage: str
    passed: bool
    value: float | None
    bar: float | None
    noise: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


def candidate_from(r: sqlite3.Row) -> Candidate:
    return Candidate(id=r["id"], source=r["source"], parents=tuple(json.loads(r["parents"])), strategy=r["strategy"],
                     note=json.loads(r["note"]), content_hash=r["content_hash"], created=r["created"])


def _opt_bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def evaluation_from(r: sqlite3.Row) -> EvaluationRecord:
    tasks = r["tasks"]
    return EvaluationRecord(
        candidate_id=r["candidate_id"], stage=r["stage"], status=Status(r["status"]), suite=r["suite"],
        suite_version=r["suite_version"], seeds=tuple(json.loads(r["seeds"])), seeds_spec=r["seeds_spec"],
        metrics=json.loads(r["metrics"]), artifacts=json.loads(r["artifacts"]), feedback=r["feedback"],
        attempts=r["attempts"], wall_s=r["wall_s"], cached_from=r["cached_from"], created=r["created"],
        tasks=None if tasks is None else tuple(json.loads(tasks)), detail=r["detail"], tune_wd=_opt_bool(r["tune_wd"]),
        reuse_lr=_opt_bool(r["reuse_lr"]), score_version=r["score_version"], rollout_id=r["rollout_id"], id=r["id"],
    )


def rollout_from(r: sqlite3.Row) -> RolloutRecord:
    return RolloutRecord(id=r["id"], pseq=r["pseq"], candidate_id=r["candidate_id"], stage=r["stage"],
                         tasks=None if r["tasks"] is None else tuple(json.loads(r["tasks"])),
                         seeds=tuple(json.loads(r["seeds"])), reuse_lr=bool(r["reuse_lr"]), detail=r["detail"],
                         repeat=bool(r["repeat"]), note=json.loads(r["note"]), observed=bool(r["observed"]),
                         created=r["created"], refused=r["refused"])


def dumps(value: Any) -> str:
    """JSON with NaN, Infinity and -Infinity kept (as Python's json writes them)."""
    return json.dumps(_plain(value), sort_keys=True, default=str)


def dumps_finite(value: Any) -> str:
    """JSON with non-finite floats as null, for columns SQLite's JSON functions read."""
    return json.dumps(_finite(_plain(value)), sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars/arrays
        return _plain(value.tolist())
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
