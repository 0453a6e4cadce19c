"""Getting the engine's evaluations run on its `config.slots` Ray slots (`scheduler`).

- **Queue.** Jobs (`jobs.Job`) wait for a slot in order: search before funnel, then the proposal
  order, then the stage.
- **Before a job starts.** Its own row already stored (a resumed run), or a stored result of the
  identical request (`result_cache`), answers it. A search job must fit the budgets
  (`budgets.SearchBudget`): one of unknown CPU cost waits until nothing else of the search runs, and
  one that does not fit stops the search. A job whose identical request is running waits for that
  result.
- **What comes back.** A result. Worker or node loss -> `lost`, retried `config.retries` times. Past
  `config.timeout_per_eval` -> `timeout`. A raising evaluator -> `crashed`.
- **Stopping.** A budget drops the queued search jobs; `budget.max_seconds` also cuts the running ones.

Every answer goes to the engine's `complete`, which stores it and decides what it means.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from typing import Any, Callable

from optforge import budgets
from optforge import funnel as funnel_lib
from optforge import jobs
from optforge.config import RunConfig
from optforge.jobs import Job
from optforge.result_cache import ResultCache
from optforge.scheduler import RayScheduler
from optforge.store import Store
from optforge.types import EvaluationResult, Status

log = logging.getLogger(__name__)

Complete = Callable[..., None]
"""complete(job, result, *, stored=False, wall_s=0.0, cached_from=None): the engine's handler of an answer."""


class Dispatcher:
    """The queue of jobs, the slots, and what comes back (see the module docstring)."""

    def __init__(self, config: RunConfig, store: Store, cache: ResultCache, scheduler: RayScheduler,
                 budget: budgets.SearchBudget, *, make_request: Callable[..., Any], clock: Callable[[], float],
                 complete: Complete) -> None:
        self.config, self.store, self.cache, self.scheduler, self.budget = config, store, cache, scheduler, budget
        self.make_request, self.clock, self.complete = make_request, clock, complete
        self._ready: list[tuple[tuple, int, Job]] = []
        self._order = itertools.count()
        self.nodes: dict[str, int] = {}  # Ray node id -> evaluations run there
        self.not_started = 0  # queued search evaluations dropped when a budget stopped the search
        self.cut = 0  # running search evaluations cancelled at budget.max_seconds

    @property
    def in_flight(self) -> int:
        return len(self.scheduler)

    @property
    def queued(self) -> int:
        return len(self._ready)

    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return not self._ready and not len(self.scheduler)

    def push(self, job: Job) -> None:
        order = (0 if job.search else 1, job.seq, funnel_lib.stage_index(job.stage.name))
        heapq.heappush(self._ready, (order, next(self._order), job))

    def step(self, timeout: float = 0.05) -> None:
        """Start what the slots and budgets allow, then hand on what finished within `timeout` seconds."""
        self._fill_slots()
        self._poll(timeout)

    def stop_search(self, reason: str) -> None:
        """A budget stopped the search: drop the queued search evaluations, and at max_seconds cut the
        running ones (their candidates stay unobserved, so a resume with more budget runs them). The
        first budget is the stop reason; the time still cuts after another one stopped the search."""
        b = self.budget
        if b.stopped and reason != "max_seconds":
            return
        b.stopped = b.stopped or reason
        kept = [entry for entry in self._ready if not entry[2].search]
        dropped = len(self._ready) - len(kept)
        self._ready = kept
        heapq.heapify(self._ready)
        cut = []
        if reason == "max_seconds":
            b.timed_out = True
            cut = [job for job in self.scheduler.cancel_all() if job.search]  # the time is up now
            for job in cut:
                for waiter in self.cache.release(job.key):
                    b.end(id(waiter))
                    dropped += 1
                b.end(id(job))
        self.not_started += dropped
        self.cut += len(cut)
        self.store.add_event("search_stopped", reason=reason, not_started=dropped,
                             cut=[{"candidate": j.candidate.id, "stage": j.stage.name} for j in cut])

    def admit_free_row(self, job: Job) -> bool:
        """Whether a row that costs no evaluation (a failed check, a twin's result) may be stored now;
        if not, the search stops there (its candidate stays unobserved)."""
        verdict = "" if not job.search else (self.budget.stopped or self._admit(job, free=True))
        if verdict and verdict != budgets.WAIT:
            self.stop_search(verdict)
            self.not_started += 1
            return False
        return True

    def cancel_all(self) -> None:
        """Cancel what runs (the run is ending), recording each as an event; best effort."""
        try:
            for job in self.scheduler.cancel_all():
                self.store.add_event("cancelled", candidate=job.candidate.id, stage=job.stage.name,
                                     status=Status.LOST.value)
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("could not cancel in-flight evaluations: %s", e)

    def _admit(self, job: Job, *, free: bool) -> str:
        """SearchBudget.admit for a search job ("" for any other)."""
        return self.budget.admit(jobs.job_cost_class(job), free=free) if job.search else ""

    def _fill_slots(self) -> None:
        held = []  # search jobs of unknown CPU cost, started when nothing else of the search runs
        while self._ready and len(self.scheduler) < self.config.slots:
            entry = heapq.heappop(self._ready)
            job = entry[2]
            if job.search and self.budget.stopped and (self.budget.timed_out or not job.attempts):
                self.not_started += 1  # a budget stopped the search (a lost one in flight is retried)
                continue
            own = jobs.own_row(self.store, job)
            if own is not None:
                self.complete(job, own.result, stored=True)
                continue
            hit = self.cache.stored(job.key)
            verdict = self._admit(job, free=hit is not None or self.cache.running(job.key))
            if verdict == budgets.WAIT:
                held.append(entry)
                continue
            if verdict:
                self.stop_search(verdict)
                self.not_started += 1
                continue
            if hit is not None:
                self.complete(job, hit.result, cached_from=hit.candidate_id)
                continue
            if job.search:
                self.budget.start(id(job), jobs.job_cost_class(job), free=self.cache.running(job.key))
            if not self.cache.claim(job.key, job):
                continue
            job.attempts += 1
            self.scheduler.submit(job, self.make_request(**job.request), self.clock())
        for entry in held:
            heapq.heappush(self._ready, entry)

    def _poll(self, timeout: float) -> None:
        if not len(self.scheduler):
            time.sleep(timeout) if not self._ready else None
            return
        for done in self.scheduler.next_completed(timeout):
            if done.error is not None:
                self._on_error(done.job, done.error, lost=done.lost)
                continue
            node = done.output["node"]
            self.nodes[node] = self.nodes.get(node, 0) + 1
            self._finish(done.job, EvaluationResult.from_dict(done.output["result"]), wall_s=done.output["wall_s"])
        limit = self.config.timeout_per_eval
        for job, ran in self.scheduler.expired(self.clock(), limit):
            self._finish(job, EvaluationResult.failure(
                Status.TIMEOUT, f"the evaluation ran past the engine limit of {limit:.0f} s and was cancelled;"
                " the rule is too slow or hangs", stage=job.stage.name), wall_s=ran)

    def _on_error(self, job: Job, e: BaseException, *, lost: bool) -> None:
        name = type(e).__name__
        if lost and job.attempts <= self.config.retries:
            log.warning("evaluation of %s at %s lost (%s); retrying", job.candidate.id, job.stage.name, name)
            self.store.add_event("lost", candidate=job.candidate.id, stage=job.stage.name, error=name,
                                 attempt=job.attempts)
            for waiter in self.cache.release(job.key):
                self.budget.end(id(waiter))
                self.push(waiter)
            self.budget.end(id(job))
            self.push(job)
            return
        text = str(e)[-2000:]
        log.error("evaluation of %s at %s failed in the engine: %s", job.candidate.id, job.stage.name, text)
        self._finish(job, EvaluationResult.failure(
            Status.LOST if lost else Status.CRASHED,
            f"the evaluation failed outside the candidate's sandbox ({name}); see artifacts.exception",
            stage=job.stage.name, exception=text), wall_s=0.0)

    def _finish(self, job: Job, result: EvaluationResult, *, wall_s: float) -> None:
        if not result.stage:
            result.stage = job.stage.name
        waiters = self.cache.release(job.key)
        self.complete(job, result, wall_s=wall_s)
        for waiter in waiters:
            if result.status.cacheable:
                self.complete(waiter, result, cached_from=job.candidate.id)
            else:
                self.budget.end(id(waiter))
                self.push(waiter)
