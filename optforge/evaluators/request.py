"""`EvalRequest`: what one evaluation is asked to do, checked when it is made.

The engine builds requests (inside a strategy's proposal: a rollout on some tasks and search seeds,
with or without reused lrs); `optforge eval` builds one per file. Everything a request says is
checked here, so a bad request fails where it was made, with the field named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["EvalRequest", "DETAILS", "SANDBOX_KEYS"]

SANDBOX_KEYS = ("timeout_s", "memory_mb", "require", "static_check", "cpu_s", "mode")
DETAILS = ("summary", "trace")


@dataclass(frozen=True)
class EvalRequest:
    """One evaluation: a rule source at a stage on a suite, with its seeds and sandbox limits.

    seeds: "selection" (the suite's selection seeds), "fresh" (lr picked on the selection seeds,
    scored on the report seeds), "fresh:N" (scored on the first N report seeds) or an explicit tuple
    (used as selection seeds: the lr is tuned on them and they are scored; a rollout on search seeds).
    tasks: the suite's tasks to run, by name (None: all of them).
    lr_multipliers: reuse_lr: task name -> lr multiplier on the rule's `LR` (a result's
    `metrics["tasks"][name]["lr_mult"]`, on the half-decade grid). Those tasks are not tuned; each
    runs at its multiplier on the scored seeds. Names outside `tasks` are ignored.
    detail: "summary", or "trace" for per-role gradient/update norms from the training job.
    baselines: the suite's baseline payload (JSON-able); None uses the committed ones.
    workers: sandbox calls run at once inside this evaluation (the CLI uses 2; engine slots use 1).
    name: what error messages call the rule (`optforge eval` passes the file or seed name).

    Raises ValueError naming the field for anything malformed; task names are checked against the
    suite (loading it) only when `tasks` or `lr_multipliers` is given.
    """

    source: str
    stage: str
    suite: str = "train"
    seeds: str | tuple[int, ...] = "selection"
    sandbox: dict = field(default_factory=dict)
    baselines: dict | None = None
    tune_wd: bool = False
    workers: int = 1
    name: str = "candidate"
    tasks: tuple[str, ...] | None = None
    lr_multipliers: Mapping[str, float] | None = None
    detail: str = "summary"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ValueError(f"EvalRequest.source must be a str, got {type(self.source).__name__}")
        if isinstance(self.seeds, str) and not re.fullmatch(r"selection|fresh(:[1-9][0-9]*)?", self.seeds):
            raise ValueError(f"EvalRequest.seeds={self.seeds!r}: use 'selection', 'fresh', 'fresh:N' or a tuple of ints")
        if not isinstance(self.seeds, str):
            object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
            if not self.seeds:
                raise ValueError("EvalRequest.seeds=(): give at least one seed, or 'selection'")
        unknown = sorted(set(self.sandbox) - set(SANDBOX_KEYS))
        if unknown:
            raise ValueError(f"EvalRequest.sandbox has unknown keys {unknown}; known: {', '.join(SANDBOX_KEYS)}")
        if int(self.workers) < 1:
            raise ValueError(f"EvalRequest.workers={self.workers!r} must be >= 1")
        if self.detail not in DETAILS:
            raise ValueError(f"EvalRequest.detail={self.detail!r}: use one of {', '.join(DETAILS)}")
        if self.tasks is not None:
            object.__setattr__(self, "tasks", _task_names(self.tasks))
        if self.lr_multipliers is not None:
            object.__setattr__(self, "lr_multipliers", _multipliers(self.lr_multipliers))
            if self.tune_wd:
                raise ValueError(
                    "EvalRequest.lr_multipliers (reuse_lr) reuses the lr only and tunes nothing, but tune_wd=True "
                    "asks for weight-decay tuning; drop one of the two"
                )
        if self.tasks is not None or self.lr_multipliers:
            check_task_names(self, _suite_task_names(self.suite))


def _task_names(tasks: Any) -> tuple[str, ...]:
    if isinstance(tasks, str) or not all(isinstance(t, str) and t for t in tasks):
        raise ValueError(f"EvalRequest.tasks={tasks!r}: give a tuple of task names, or None for all")
    names = tuple(tasks)
    if not names:
        raise ValueError("EvalRequest.tasks=(): give at least one task name, or None for all")
    dupes = sorted({t for t in names if names.count(t) > 1})
    if dupes:
        raise ValueError(f"EvalRequest.tasks names {dupes} more than once")
    return names


def _multipliers(mults: Any) -> dict[str, float]:
    from optforge.evaluators.protocol import grid_index

    if not isinstance(mults, Mapping):
        raise ValueError(f"EvalRequest.lr_multipliers must map task names to numbers, got {type(mults).__name__}")
    out = {}
    for name, m in mults.items():
        if not isinstance(name, str):
            raise ValueError(f"EvalRequest.lr_multipliers: key {name!r} is not a task name")
        try:
            grid_index(m)
        except ValueError as e:
            raise ValueError(f"EvalRequest.lr_multipliers[{name!r}]: {e}") from None
        out[name] = float(m)
    return out


def _suite_task_names(suite: str) -> tuple[str, ...]:
    from optforge.evaluators.tasks import get_suite

    return get_suite(suite).task_names


def check_task_names(request: EvalRequest, known: tuple[str, ...]) -> None:
    """Raise ValueError if `request.tasks` or the keys of `request.lr_multipliers` are not in `known`."""
    for what, names in (("tasks", request.tasks or ()), ("lr_multipliers", request.lr_multipliers or {})):
        bad = [n for n in names if n not in known]
        if bad:
            raise ValueError(
                f"EvalRequest.{what} names {bad}, not tasks of suite '{request.suite}'; its tasks: {', '.join(known)}"
            )


def selected_tasks(request: EvalRequest, suite: Any) -> tuple:
    """The suite's tasks the request runs, in suite order."""
    if request.tasks is None:
        return tuple(suite.tasks)
    return tuple(t for t in suite.tasks if t.name in request.tasks)


def fixed_multipliers(request: EvalRequest, tasks: tuple) -> dict[str, float]:
    """reuse_lr: the multipliers of the tasks that run (names outside `tasks` dropped)."""
    names = {t.name for t in tasks}
    return {k: v for k, v in (request.lr_multipliers or {}).items() if k in names}


def resolve_seeds(request: EvalRequest, suite: Any, smoke: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(selection seeds, fresh seeds to score on; empty = score on the selection seeds)."""
    if not isinstance(request.seeds, str):
        return tuple(request.seeds), ()
    sel = tuple(suite.selection_seeds)
    if smoke:
        sel = sel[:1]
    if request.seeds.startswith("fresh"):
        n = int(request.seeds.split(":")[1]) if ":" in request.seeds else len(suite.report_seeds)
        if n > len(suite.report_seeds):
            raise ValueError(
                f"seeds {request.seeds!r}: suite '{suite.name}' has {len(suite.report_seeds)} report seeds "
                f"{list(suite.report_seeds)}; add report seeds (a new suite version, with baselines) or lower funnel.fresh_seeds"
            )
        return sel, tuple(suite.report_seeds)[:n]
    return sel, ()
