"""Subtasks (named task subsets of the search suite), their weights, and the meta-utility.

MoH scores a procedure on several subtasks of one problem (TSP at sizes 100 and 200) and weighs them
by problem size (Shi et al., ICLR 2026, `meta_utility`). Here a subtask is a group of tasks of the
search suite (by family by default), and its default weight is its cost: the samples its tasks
train on, steps x batch size summed over its tasks (`task_cost`), a size measure known without running
anything (`python -m optforge.evaluators.tasks.costs` measures the real seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from optforge.types import FLOOR

WORST = FLOOR
"""The meta-utility of a failed procedure, and the fitness of a failed rule: the fitness floor."""


@dataclass(frozen=True)
class Subtask:
    """A named subset of the search suite's tasks, with its weight in the meta-utility."""

    name: str
    tasks: tuple[str, ...]
    weight: float


def task_cost(task: Any) -> float:
    """A task's size: samples trained on (steps x batch size)."""
    return float(task.steps) * float(task.batch_size)


def group_tasks(tasks: Iterable[Any], by: str) -> dict[str, tuple[str, ...]]:
    """The default subtasks: task names grouped by `family`, or one subtask per task (`by="task"`),
    in suite order."""
    groups: dict[str, list[str]] = {}
    for t in tasks:
        groups.setdefault(t.family if by == "family" else t.name, []).append(t.name)
    return {k: tuple(v) for k, v in groups.items()}


def resolve_subtasks(names: Sequence[str], tasks: Callable[[], Iterable[Any]], subtasks: Mapping[str, Iterable[str]] | None,
                     group_by: str, weights: str | Mapping[str, float]) -> tuple[Subtask, ...]:
    """The run's subtasks over the search suite's task `names`: `subtasks` ({name: task names}) or
    the tasks grouped by `group_by`, each with its weight (`"cost"`, `"equal"` or an explicit mapping).
    `tasks()` gives the suite's Task objects (family, steps, batch size), asked only when grouping or
    cost weights need them. Raises ValueError for a task not in the search suite (held-out tasks can
    never be a subtask) or a weight without a subtask."""
    known: dict[str, Any] = {}

    def task(name: str) -> Any:
        if not known:
            known.update({t.name: t for t in tasks()})
        if name not in known:
            raise ValueError(f"moh: task '{name}' of the search suite has no family or size known here; give "
                             "strategy.subtasks and explicit strategy.weights")
        return known[name]

    groups = dict(subtasks) if subtasks is not None else group_tasks([task(n) for n in names], group_by)
    out = []
    for name, members in groups.items():
        members = tuple(members)
        unknown = [t for t in members if t not in names]
        if unknown:
            raise ValueError(f"strategy.subtasks.{name}: task(s) {', '.join(unknown)} are not in the search suite "
                             f"({', '.join(names)}); a subtask is a subset of the search suite")
        if isinstance(weights, str):
            weight = 1.0 if weights == "equal" else sum(task_cost(task(t)) for t in members)
        else:
            if name not in weights:
                raise ValueError(f"strategy.weights has no weight for subtask '{name}' (subtasks: {', '.join(groups)})")
            weight = float(weights[name])
        out.append(Subtask(name, members, weight))
    if not isinstance(weights, str):
        extra = sorted(set(weights) - set(groups))
        if extra:
            raise ValueError(f"strategy.weights names {', '.join(extra)}, which are not subtasks ({', '.join(groups)})")
    return tuple(out)


def meta_utility(best: Mapping[str, float | None], subtasks: Iterable[Subtask]) -> float:
    """Sum_i w_i u_i / Sum_i w_i over `subtasks`, u_i the best fitness the procedure's run reached on
    subtask i (`best[name]`; None or missing, a run that reached nothing: WORST)."""
    num = den = 0.0
    for s in subtasks:
        u = best.get(s.name)
        u = WORST if u is None or not math.isfinite(u) else float(u)
        num += s.weight * u
        den += s.weight
    return num / den if den > 0 else WORST
