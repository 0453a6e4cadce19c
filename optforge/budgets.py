"""The search budgets: which evaluation may still start, counting those in flight, and the time left.

- `budget.max_evaluations` counts search-stage evaluation rows of the strategy's candidates. A row
  in flight (running, or waiting on an identical request) counts as spent, so the rows stored never
  exceed the budget.
- `budget.max_train_cpu_s` counts their CPU seconds (a cache hit is free; a timeout that measured none
  counts the wall time it held its slot: `charged_cpu_s`). An evaluation in flight
  counts as the mean CPU of the finished evaluations of its cost class (`CpuEstimates`); one that
  would take the spent and in-flight seconds past the budget does not start. While nothing of its
  kind has finished its cost is unknown, and such an evaluation starts only when nothing else of the
  search runs, so the overshoot is at most the error of an estimate.
- `budget.max_seconds`, `max_dollars` and `max_llm_calls` are checked by the engine as they are
  spent; at `max_seconds` the engine also cuts what runs (`dispatch`).
- A reached budget stops new proposals. The rows, CPU and time budgets (`EVALUATION_BUDGETS`) also
  drop the queued search evaluations; their candidates stay unobserved, so a resume with more budget
  runs them.

`SearchBudget` holds one run's state of all of these as the engine spends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from optforge.config import BudgetConfig
from optforge.types import EvaluationResult, Status

EVALUATION_BUDGETS = ("max_evaluations", "max_train_cpu_s", "max_seconds")
"""Budgets that also stop queued evaluations (the others, candidates and LLM spend, only stop proposals:
what was proposed is paid for and still evaluated)."""

WAIT = "wait"
"""`admit`'s answer for an evaluation of unknown cost while others run: start it later."""


class CpuEstimates:
    """Mean CPU seconds of finished (not cached) evaluations, per cost class (`jobs.cost_class`)."""

    def __init__(self) -> None:
        self._sum: dict[tuple, float] = {}
        self._n: dict[tuple, int] = {}

    def add(self, cost_class: tuple, cpu_s: float) -> None:
        self._sum[cost_class] = self._sum.get(cost_class, 0.0) + float(cpu_s)
        self._n[cost_class] = self._n.get(cost_class, 0) + 1

    def of(self, cost_class: tuple) -> float | None:
        """The mean CPU seconds of the class; for a class with nothing finished yet, the largest mean of
        its kind (the same stage, and a rollout like it: `jobs.cost_class`); None when there is none."""
        n = self._n.get(cost_class, 0)
        if n:
            return self._sum[cost_class] / n
        alike = [self._sum[c] / self._n[c] for c in self._n if c[0] == cost_class[0] and len(c) == len(cost_class)]
        return max(alike) if alike else None


@dataclass
class SearchSpend:
    """Rows stored and CPU seconds spent by the search, and the evaluations in flight (job id -> its CPU
    estimate in seconds, None when unknown; 0 for a row that waits on an identical request)."""

    rows: int = 0
    cpu_s: float = 0.0
    in_flight: dict[int, float | None] = field(default_factory=dict)

    def start(self, job_id: int, cpu_estimate: float | None) -> None:
        self.in_flight[job_id] = cpu_estimate

    def end(self, job_id: int) -> None:
        self.in_flight.pop(job_id, None)

    def add_row(self, cpu_s: float) -> None:
        self.rows += 1
        self.cpu_s += cpu_s

    @property
    def committed_rows(self) -> int:
        return self.rows + len(self.in_flight)

    @property
    def committed_cpu_s(self) -> float:
        return self.cpu_s + sum(e for e in self.in_flight.values() if e is not None)


def admit(budget: BudgetConfig, spend: SearchSpend, cpu_estimate: float | None) -> str:
    """Whether one more search row may start: "" (yes), WAIT (its CPU cost is unknown and others run),
    or the name of the budget it would take past its limit (the search stops)."""
    if budget.max_evaluations is not None and spend.committed_rows + 1 > budget.max_evaluations:
        return "max_evaluations"
    limit = budget.max_train_cpu_s
    if limit is not None:
        if spend.committed_cpu_s >= limit:
            return "max_train_cpu_s"
        if cpu_estimate is None:
            return WAIT if spend.in_flight else ""
        if spend.committed_cpu_s + cpu_estimate > limit:
            return "max_train_cpu_s"
    return ""


def reached(budget: BudgetConfig, spend: SearchSpend) -> str:
    """The row or CPU budget that leaves no room for another evaluation ("" when both have room)."""
    if budget.max_evaluations is not None and spend.committed_rows >= budget.max_evaluations:
        return "max_evaluations"
    if budget.max_train_cpu_s is not None and spend.committed_cpu_s >= budget.max_train_cpu_s:
        return "max_train_cpu_s"
    return ""


def eta_s(budget: BudgetConfig, *, elapsed_s: float, used: Mapping[str, float]) -> float | None:
    """Seconds until the first budget runs out, each at the run's mean rate so far (all sessions: the
    elapsed time and the use are both the whole run's). `used`: use per budget name (candidates
    observed, rows, CPU seconds). None when no budget bounds the search or none has been used yet."""
    left = []
    if budget.max_seconds is not None:
        left.append(max(0.0, budget.max_seconds - elapsed_s))
    for name in ("max_candidates", "max_evaluations", "max_train_cpu_s"):
        limit, spent = getattr(budget, name), float(used.get(name, 0.0))
        if limit is not None and spent > 0 and math.isfinite(spent):
            left.append(elapsed_s / spent * max(0.0, limit - spent))
    return min(left) if left else None


def charged_cpu_s(result: EvaluationResult, wall_s: float) -> float:
    """CPU seconds that budget.max_train_cpu_s counts for one evaluated (not cached) row: the
    `cpu_seconds` its result reports; for a timeout that reports none, the wall time it held its slot
    (`wall_s`) at one CPU, a slot's share (`scheduler`); otherwise 0 (say, an evaluator that raised
    before it measured anything: nothing honest is known)."""
    if isinstance(result.metrics.get("cpu_seconds"), (int, float)):
        return reported_cpu_s(result.metrics)
    return max(0.0, float(wall_s)) if result.status is Status.TIMEOUT else 0.0


def reported_cpu_s(metrics: Mapping[str, Any]) -> float:
    """The CPU seconds a row's metrics report (0 when none), as `Store.train_cpu_seconds` reads them."""
    cpu = metrics.get("cpu_seconds")
    return float(cpu) if isinstance(cpu, (int, float)) else 0.0


class SearchBudget:
    """One run's search budgets as the engine spends them: the rows and CPU of the search with what is in
    flight (`spend`), the CPU estimates (`cpu`), and the budget that stopped the search (`stopped`).
    Evaluations are keyed by an id the caller chooses, and priced by their cost class (`jobs.cost_class`)."""

    def __init__(self, budget: BudgetConfig) -> None:
        self.budget = budget
        self.spend = SearchSpend()
        self.cpu = CpuEstimates()
        self.stopped = ""  # the budget that stopped the search, once one has
        self.timed_out = False  # budget.max_seconds passed: what ran then was cut, nothing more starts

    def restore(self, rows: int, cpu_s: float, evaluated: Iterable[tuple[tuple, float]]) -> None:
        """A resumed run's spend: `rows` and `cpu_s` stored, and (cost class, CPU seconds) of each
        evaluated row for the estimates."""
        self.spend = SearchSpend(rows, cpu_s)
        for cost_class, cpu in evaluated:
            self.cpu.add(cost_class, cpu)

    def admit(self, cost_class: tuple, *, free: bool) -> str:
        """`admit` for one search row ("" / WAIT / the budget that refuses it); free for a cache hit or
        a row that waits on an identical request."""
        return admit(self.budget, self.spend, 0.0 if free else self.cpu.of(cost_class))

    def start(self, job_id: int, cost_class: tuple, *, free: bool) -> None:
        self.spend.start(job_id, 0.0 if free else self.cpu.of(cost_class))

    def end(self, job_id: int) -> None:
        """The evaluation left flight without a row (dropped, cut, or to be retried)."""
        self.spend.end(job_id)

    def add_row(self, job_id: int, cost_class: tuple, cpu_s: float, *, cached: bool) -> None:
        """A row was stored: it leaves flight, its CPU is spent (a cached row's is 0) and, if evaluated
        here, joins its class's estimate (the mean of what the budget counts)."""
        self.spend.end(job_id)
        self.spend.add_row(0.0 if cached else cpu_s)
        if not cached:
            self.cpu.add(cost_class, cpu_s)

    def reason(self, elapsed_s: float, llm_spend: Callable[[], tuple[float, int]]) -> str:
        """The budget that stops new proposals now ("" when none): max_seconds, the row and CPU budgets
        counting what is in flight, then the LLM's dollars and calls (`llm_spend()`, read only when
        those are bounded)."""
        b = self.budget
        if self.deadline(elapsed_s):
            return "max_seconds"
        hit = reached(b, self.spend)
        if hit:
            return hit
        if b.max_dollars is not None or b.max_llm_calls is not None:
            dollars, calls = llm_spend()
            if b.max_dollars is not None and dollars >= b.max_dollars:
                return "max_dollars"
            if b.max_llm_calls is not None and calls >= b.max_llm_calls:
                return "max_llm_calls"
        return ""

    def deadline(self, elapsed_s: float) -> bool:
        """Whether budget.max_seconds has passed."""
        limit = self.budget.max_seconds
        return limit is not None and elapsed_s >= limit

    def used(self, candidates_observed: int) -> dict[str, float]:
        """Use per budget name, for `eta_s`."""
        return {"max_candidates": candidates_observed, "max_evaluations": self.spend.rows,
                "max_train_cpu_s": self.spend.cpu_s}
