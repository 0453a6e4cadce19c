"""The async loop that every strategy shares: proposals in, evaluations out, results back.

- **Proposals.** A background thread (`proposer.Proposer`) owns the strategy and proposes ahead, so a
  slow (LLM) proposer overlaps evaluation. A proposal is a new candidate (run through the search
  stages, smoke then train) or a `Rollout` of an observed one (one more evaluation row on some tasks
  and search seeds, checked by `optforge.rollouts`). The main thread stores everything the proposer
  produces, in order, with the strategy state and records that came with it. In deterministic mode
  the strategy's inputs never depend on completion order (see `proposer`).
- **Evaluations.** `config.slots` run at once as Ray tasks (`optforge.scheduler`, the only Ray
  import); `optforge.result_cache` evaluates an identical request once.
- **Budgets** (`optforge.budgets`). max_candidates, max_evaluations (search-stage evaluation rows of
  strategy candidates), max_train_cpu_s (their CPU seconds; cache hits are free), max_seconds,
  max_dollars, max_llm_calls. An evaluation starts only if the row and CPU budgets have room for it
  counting those in flight, so stored rows never exceed max_evaluations and CPU seconds exceed
  max_train_cpu_s by at most an estimate's error. A reached budget stops new proposals; the rows, CPU
  and time budgets also drop the queued search evaluations (their candidates stay unobserved: a
  resume with more budget runs them), and what runs finishes, except at max_seconds, where it is cut
  too. `RunSummary` says how many.
- **Failures.** Worker/node loss -> `lost` (retried `config.retries` times); past
  `config.timeout_per_eval` -> `timeout`; a raising evaluator -> `crashed`. Ctrl-C leaves a
  resumable store. A warm start that fails at the first stage, or a funnel reference at any stage,
  stops the run (`run_outcome.start_failure`). A rollout the engine refuses (a held-out task, a
  report seed, an unknown candidate...) is stored with the reason and handed back to the strategy
  as an `invalid` result (`rollouts.refusal`); the run goes on. Any other error that ends the run
  (the strategy raised) leaves status `failed` with the reason in meta `failure`, and is raised as
  `RunError`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from optforge import budgets
from optforge import funnel as funnel_lib
from optforge import jobs
from optforge import rollouts as rollout_lib
from optforge.config import RunConfig, StageConfig
from optforge.evaluators.scoring import SCORE_VERSION
from optforge.jobs import Job
from optforge.proposer import Proposer
from optforge.result_cache import ResultCache
from optforge.run_outcome import (  # noqa: F401 - re-exported: the engine's public names
    FAILED_START, Progress, RunError, RunFailed, RunSummary, error_reason, start_failure,
)
from optforge.scheduler import EvaluateFn, RayScheduler
from optforge.search.base import Rollout, Strategy
from optforge.search.context import RecordSink
from optforge.store import RolloutRecord, Store, versions
from optforge.types import Candidate, EvaluationResult, Status

log = logging.getLogger(__name__)

RequestFactory = Callable[..., Any]
"""make_request(source=, stage=, suite=, seeds=, sandbox=, tune_wd=[, tasks=, lr_multipliers=, detail=])"""


@dataclass
class _Counters:
    proposed: int = 0  # strategy proposals (candidates and rollouts)
    observed: int = 0
    candidates_observed: int = 0  # what budget.max_candidates's ETA counts
    done: int = 0  # evaluations finished this session (all stages)
    not_started: int = 0  # queued search evaluations dropped when a budget stopped the search
    cut: int = 0  # running search evaluations cancelled at budget.max_seconds
    nodes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    best: tuple[str, float] | None = None


class Engine:
    """Runs one strategy against one store. Collaborators are passed in: `evaluate` runs in a Ray task;
    `search_suite()` gives what rollouts may use (default: the run's suites, `SearchSuite.of`)."""

    def __init__(self, config: RunConfig, strategy: Strategy, store: Store, evaluate: EvaluateFn, *,
                 make_request: RequestFactory, suite_version: Callable[[str], str],
                 progress: Callable[[Progress], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 records: RecordSink | None = None, search_suite: Callable[[], rollout_lib.SearchSuite] | None = None):
        self.config, self.strategy, self.store = config, strategy, store
        self.make_request, self.progress, self.clock = make_request, progress, clock
        self.records = records or RecordSink()
        self.cache = ResultCache(store, suite_version, SCORE_VERSION)
        self.scheduler = RayScheduler(evaluate, num_gpus=config.ray.num_gpus)
        self._search_suite_fn = search_suite or (lambda: rollout_lib.search_suite_for(config))
        self._search_suite: rollout_lib.SearchSuite | None = None
        self._ready: list[tuple[tuple, int, Job]] = []
        self._order = itertools.count()
        self._proposer: Proposer | None = None
        self._n = _Counters()
        self._spend = budgets.SearchSpend()  # rows and CPU of the search, with what is in flight
        self._cpu = budgets.CpuEstimates()
        self._stop = ""  # the budget that stopped the search, once one has
        self._timed_out = False  # budget.max_seconds passed: what ran then was cut, nothing more starts
        self._last_saved = 0.0
        self._phase = "search"
        self._last_progress = 0.0
        self._t0, self._elapsed0 = clock(), 0.0
        self._strategy_open = True

    # ------------------------------------------------------------------------------ entry point

    def run(self) -> RunSummary:
        """Search until a budget or the strategy stops, then run the promotion funnel."""
        st = self.store
        if st.meta("config") is None:
            st.set_meta(config=self.config.to_dict(), versions={**versions(), "score_version": SCORE_VERSION},
                        created=time.time(), lag=2 * self.config.slots, batch=self.config.slots)
        self._t0, self._elapsed0 = self.clock(), float(st.meta("elapsed_s", 0.0))
        top = st.best(self.config.search_stages()[-1].name)
        self._n.best = (top.candidate.id, top.evaluation.aggregate.mean) if top else None
        self._n.failures = {k: v for k, v in st.status_counts().items() if k != Status.OK.value}
        search = [s.name for s in self.config.search_stages()]
        self._spend = budgets.SearchSpend(st.evaluation_count(stages=search), st.train_cpu_seconds(stages=search))
        for ev in st.evaluations():
            if ev.stage in search and ev.cached_from is None:
                cpu = ev.metrics.get("cpu_seconds")
                self._cpu.add(jobs.row_cost_class(ev), float(cpu) if isinstance(cpu, (int, float)) else 0.0)
        st.set_meta(status="running")
        st.add_event("start", resumed=st.proposal_count() > 0)
        reason, interrupted, failure = st.meta("stop_reason", ""), False, ""
        try:
            if not st.meta("search_done", False):
                reason = self._search()
                st.set_meta(search_done=True, stop_reason=reason)
            self._close_strategy()
            self._phase = "funnel"
            funnel_lib.run_funnel(st, self.config, self._run_to_completion)
            st.set_meta(status="finished")
        except KeyboardInterrupt:
            interrupted, reason = True, "interrupted"
            self._cancel_all()
            st.set_meta(status="interrupted")
            st.add_event("interrupted")
        except RunFailed as e:
            reason, failure = "failed_start", str(e)
            self._cancel_all()
            st.set_meta(status="failed", stop_reason=reason, failure=failure)
            st.add_event("failed", reason=failure)
        except BaseException as e:  # a strategy, LLM replay or engine error (SystemExit too): stored, then raised
            failure = error_reason(e)
            self._cancel_all()
            st.set_meta(status="failed", stop_reason="error", failure=failure)
            st.add_event("failed", reason=failure, error=type(e).__name__)
            if isinstance(e, Exception):
                raise RunError(failure) from e
            raise
        finally:
            if self._proposer is not None:
                self._proposer.shutdown()
            self._close_strategy()
            st.set_meta(elapsed_s=self._elapsed())
        return self._summary(reason, interrupted, failure)

    def _close_strategy(self) -> None:
        """Call the strategy's optional `close()` hook once (after the search, or when the run stops)."""
        close = getattr(self.strategy, "close", None) if self._strategy_open else None
        self._strategy_open = False
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - a strategy's cleanup must not hide how the run ended
                log.warning("the strategy's close() failed", exc_info=True)

    # ------------------------------------------------------------------------------ search

    def _search(self) -> str:
        st, cfg = self.store, self.config
        state = st.strategy_state()
        if state is not None:
            self.strategy.load_state(state)
        proposals = st.proposals()
        observed = st.observed_ids()
        n_cands = sum(isinstance(p, Candidate) for p in proposals)
        n_observed = sum(p.id in observed if isinstance(p, Candidate) else p.observed for p in proposals)
        cap = None if cfg.budget.max_candidates is None else max(0, cfg.budget.max_candidates - n_cands)
        self._proposer = prop = Proposer(
            self.strategy, deterministic=cfg.deterministic, batch=int(st.meta("batch", cfg.slots)),
            lag=int(st.meta("lag", 2 * cfg.slots)), next_seq=len(proposals), n_observed=n_observed, cap=cap,
            records=self.records)
        self._n.proposed, self._n.observed = len(proposals), n_observed
        self._n.candidates_observed = sum(isinstance(p, Candidate) and p.id in observed for p in proposals)
        for seq, p in enumerate(proposals):  # resume: finish what the store says is unfinished
            if isinstance(p, Candidate):
                self.cache.index(p)
                if p.id not in observed:
                    self._start_candidate(seq, p)
            elif not p.observed:
                self._start_rollout(seq, p)
        prop.start()
        finished, stop = "", ""
        while True:
            for kind, *args in prop.drain():
                if kind == "proposals":
                    self._on_proposals(*args)
                elif kind == "observed":
                    cid, rollout_id, state, records = args
                    st.mark_observed(cid, state, rollout_id=rollout_id, records=records)
                    self._n.observed += 1
                    self._n.candidates_observed += rollout_id is None
                elif kind == "finished":
                    finished = args[0]
                elif kind == "error":
                    raise args[0]  # the strategy's own exception (a ReplayError, say), with its traceback
            if not stop and not finished:
                stop = self._stop or self._budget_reason()  # _stop: an evaluation the budgets refused to start
                if stop:
                    prop.stop_proposing(stop)
            if not self._stop and stop in budgets.EVALUATION_BUDGETS:  # these also stop what is queued
                self._stop_search(stop)
            if not self._timed_out and self._deadline():  # whatever stopped the proposals, the time cuts
                self._stop_search("max_seconds")
            if finished and not len(self.scheduler) and not self._ready and prop.settled():
                return self._stop or stop or finished
            self._step()

    def _on_proposals(self, items: list, state: dict, records: list) -> None:
        """Store a batch (rollouts checked and their seeds resolved first), then start its evaluations."""
        first = self.store.strategy_proposal_count()
        stage = self.config.search_stages()[-1]
        tunes_wd = funnel_lib.resolve_stage(stage, self.config)[2]
        rollouts: list[RolloutRecord] = []
        for seq, item in enumerate(items, first):
            if isinstance(item, Rollout):
                reserved = [s for r in rollouts if r.candidate_id == item.candidate_id and r.refused is None
                            for s in r.seeds]
                try:
                    rollouts.append(rollout_lib.resolve(item, pseq=seq, stage=stage.name, store=self.store,
                                                        suite=self._suite(), reserved=reserved, tunes_wd=tunes_wd))
                except rollout_lib.RolloutRefused as e:
                    log.warning("refused a rollout (handed back to the strategy): %s", e)
                    rollouts.append(rollout_lib.refused_record(item, pseq=seq, stage=stage.name, reason=str(e)))
            elif not isinstance(item, Candidate):
                raise TypeError(f"the strategy proposed a {type(item).__name__}; propose() returns Candidates "
                                "and Rollouts (optforge.search.base)")
        cands = [c for c in items if isinstance(c, Candidate)]
        self.store.add_proposals(cands, state, rollouts=rollouts, records=records)
        stored = {r.pseq: r for r in self.store.rollouts(refused=True)} if rollouts else {}
        self._n.proposed += len(items)
        for seq, item in enumerate(items, first):
            if isinstance(item, Candidate):
                self.cache.index(item)
                self._start_candidate(seq, item)
            else:
                if stored[seq].refused is not None:
                    self.store.add_event("rollout_refused", candidate=item.candidate_id, pseq=seq,
                                         reason=stored[seq].refused)
                self._start_rollout(seq, stored[seq])

    def _start_rollout(self, seq: int, r: RolloutRecord) -> None:
        """Queue a stored rollout's evaluation, or hand a refused one back to the strategy at its place."""
        if r.refused is None:
            self._push(jobs.rollout_job(self.config, self.cache, self.store, seq, r, self._suite().tasks))
            return
        try:
            cand = self.store.candidate(r.candidate_id)
        except KeyError:
            cand = None
        if cand is None or cand.id != r.candidate_id:  # a rollout of a candidate that does not exist
            cand = Candidate(id=r.candidate_id, source="", strategy=getattr(self.strategy, "name", ""))
        self._proposer.deliver(seq, cand, rollout_lib.refusal(r), rollout=rollout_lib.as_rollout(r))

    def _start_candidate(self, seq: int, cand: Candidate) -> None:
        first = self.config.search_stages()[0]
        job = self._stage_job(seq, cand, first, search=True)
        if cand.note.get("status") == "invalid":
            existing = self.store.evaluation(cand.id, first.name)
            if existing is None and not self._admit_free_row(job):
                return
            result = existing.result if existing else EvaluationResult.failure(
                Status.INVALID, str(cand.note.get("reason", "rejected by the strategy")), stage=first.name)
            self._complete(job, result, stored=existing is not None)
            return
        self._push(job)

    def _stage_job(self, seq: int, cand: Candidate, stage: StageConfig, *, search: bool) -> Job:
        return jobs.stage_job(self.config, self.cache, seq, cand, stage, search=search)

    def _suite(self) -> rollout_lib.SearchSuite:
        if self._search_suite is None:
            self._search_suite = self._search_suite_fn()
        return self._search_suite

    def _deadline(self) -> str:
        limit = self.config.budget.max_seconds
        return "max_seconds" if limit is not None and self._elapsed() >= limit else ""

    def _budget_reason(self) -> str:
        b = self.config.budget
        if self._deadline():
            return "max_seconds"
        reached = budgets.reached(b, self._spend)
        if reached:
            return reached
        if b.max_dollars is not None or b.max_llm_calls is not None:
            dollars, calls = self.store.llm_spend()
            if b.max_dollars is not None and dollars >= b.max_dollars:
                return "max_dollars"
            if b.max_llm_calls is not None and calls >= b.max_llm_calls:
                return "max_llm_calls"
        return ""

    def _stop_search(self, reason: str) -> None:
        """A budget stopped the search: drop the queued search evaluations, and at max_seconds cut the
        running ones (their candidates stay unobserved, so a resume with more budget runs them). The
        first budget is the stop reason; the time still cuts after another one stopped the search."""
        if self._stop and reason != "max_seconds":
            return
        self._stop = self._stop or reason
        kept = [entry for entry in self._ready if not entry[2].search]
        dropped = len(self._ready) - len(kept)
        self._ready = kept
        heapq.heapify(self._ready)
        cut = []
        if reason == "max_seconds":
            self._timed_out = True
            cut = [job for job in self.scheduler.cancel_all() if job.search]  # the time is up now
            for job in cut:
                for waiter in self.cache.release(job.key):
                    self._spend.end(id(waiter))
                    dropped += 1
                self._spend.end(id(job))
        self._n.not_started += dropped
        self._n.cut += len(cut)
        self.store.add_event("search_stopped", reason=reason, not_started=dropped,
                             cut=[{"candidate": j.candidate.id, "stage": j.stage.name} for j in cut])

    def _admit(self, job: Job, *, free: bool) -> str:
        """budgets.admit for a search job ("" for any other): free for a cache hit or a twin's wait."""
        if not job.search:
            return ""
        return budgets.admit(self.config.budget, self._spend, 0.0 if free else self._cpu.of(jobs.job_cost_class(job)))

    def _admit_free_row(self, job: Job) -> bool:
        """Whether a row that costs no evaluation (a failed check, a twin's result) may be stored now;
        if not, the search stops there (its candidate stays unobserved)."""
        verdict = "" if not job.search else (self._stop or self._admit(job, free=True))
        if verdict and verdict != budgets.WAIT:
            self._stop_search(verdict)
            self._n.not_started += 1
            return False
        return True

    # ------------------------------------------------------------------------------ scheduling

    def _run_to_completion(self, jobs: list[tuple[int, Candidate, StageConfig]]) -> None:
        """Evaluate funnel jobs (seq, candidate, stage) and wait for all of them (`funnel.run_funnel`)."""
        for seq, cand, stage in jobs:
            self._phase = f"funnel:{stage.name}"
            self._push(self._stage_job(seq, cand, stage, search=False))
        while self._ready or len(self.scheduler):
            self._step()

    def _push(self, job: Job) -> None:
        order = (0 if job.search else 1, job.seq, funnel_lib.stage_index(job.stage.name))
        heapq.heappush(self._ready, (order, next(self._order), job))

    def _step(self) -> None:
        self._fill_slots()
        self._poll(0.05)
        self._report()

    def _fill_slots(self) -> None:
        held = []  # search jobs of unknown CPU cost, started when nothing else of the search runs
        while self._ready and len(self.scheduler) < self.config.slots:
            entry = heapq.heappop(self._ready)
            job = entry[2]
            if job.search and self._stop and (self._timed_out or not job.attempts):
                self._n.not_started += 1  # a budget stopped the search (a lost one in flight is retried)
                continue
            own = jobs.own_row(self.store, job)
            if own is not None:
                self._complete(job, own.result, stored=True)
                continue
            hit = self.cache.stored(job.key)
            verdict = self._admit(job, free=hit is not None or self.cache.running(job.key))
            if verdict == budgets.WAIT:
                held.append(entry)
                continue
            if verdict:
                self._stop_search(verdict)
                self._n.not_started += 1
                continue
            if hit is not None:
                self._complete(job, hit.result, cached_from=hit.candidate_id)
                continue
            if job.search:
                self._spend.start(id(job), 0.0 if self.cache.running(job.key) else self._cpu.of(jobs.job_cost_class(job)))
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
            self._n.nodes[node] = self._n.nodes.get(node, 0) + 1
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
                self._spend.end(id(waiter))
                self._push(waiter)
            self._spend.end(id(job))
            self._push(job)
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
        self._complete(job, result, wall_s=wall_s)
        for waiter in waiters:
            if result.status.cacheable:
                self._complete(waiter, result, cached_from=job.candidate.id)
            else:
                self._spend.end(id(waiter))
                self._push(waiter)

    def _complete(self, job: Job, result: EvaluationResult, *, stored: bool = False, wall_s: float = 0.0,
                  cached_from: str | None = None) -> None:
        self._n.done += 1
        if not stored:
            self.store.add_evaluation(job.candidate, result, key=job.key, attempts=max(job.attempts, 1), wall_s=wall_s,
                                      cached_from=cached_from, rollout_id=job.rollout_id)
            self.store.set_meta(elapsed_s=self._elapsed())
            if job.search:
                self._spend.end(id(job))
                cpu = result.metrics.get("cpu_seconds")
                spent = float(cpu) if cached_from is None and isinstance(cpu, (int, float)) else 0.0
                self._spend.add_row(spent)
                if cached_from is None:  # the estimate is the mean of what the budget counts (no CPU recorded: 0)
                    self._cpu.add(jobs.job_cost_class(job), spent)
        stages = self.config.search_stages()
        failure = start_failure(job.candidate, result, job.stage.name, stages[0].name)
        if failure:
            raise RunFailed(failure)
        if not job.search:
            return
        if job.rollout is not None:
            self._proposer.deliver(job.seq, job.candidate, result, rollout=rollout_lib.as_rollout(job.rollout))
            return
        i = [s.name for s in stages].index(job.stage.name)
        final = not (result.ok and i + 1 < len(stages))
        if not stored and (final or job.stage.name == stages[-1].name):
            self._track(job.candidate, result, final_stage=job.stage.name == stages[-1].name)
        if final:
            self._proposer.deliver(job.seq, job.candidate, result)
            return
        self._proposer.deliver_partial(job.seq, job.candidate, result)
        nxt = self._stage_job(job.seq, job.candidate, stages[i + 1], search=True)
        twin = self.cache.twin(job.candidate, nxt.stage.name, nxt.key)
        if twin is None:
            self._push(nxt)
        elif self._admit_free_row(nxt):
            self._complete(nxt, twin[1], cached_from=twin[0])

    def _track(self, cand: Candidate, result: EvaluationResult, *, final_stage: bool) -> None:
        if not result.ok:  # running best and failure counts for the progress display (no store scans)
            self._n.failures[result.status.value] = self._n.failures.get(result.status.value, 0) + 1
        elif final_stage and (self._n.best is None or result.fitness > self._n.best[1]):
            self._n.best = (cand.id, result.fitness)

    def _cancel_all(self) -> None:
        try:
            for job in self.scheduler.cancel_all():
                self.store.add_event("cancelled", candidate=job.candidate.id, stage=job.stage.name,
                                     status=Status.LOST.value)
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("could not cancel in-flight evaluations: %s", e)

    # ------------------------------------------------------------------------------ reporting

    def _elapsed(self) -> float:
        return self._elapsed0 + (self.clock() - self._t0)

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._last_saved >= 5.0:  # a killed run loses at most 5 s of its elapsed time
            self._last_saved = now
            self.store.set_meta(elapsed_s=self._elapsed())
        if self.progress is None or now - self._last_progress < 0.5:
            return
        self._last_progress = now
        elapsed, n = self._elapsed(), self._n
        eta = None  # the funnel's and a stopped search's remaining time are not estimated
        if self._phase == "search" and not self._stop:
            eta = budgets.eta_s(self.config.budget, elapsed_s=elapsed, used={
                "max_candidates": n.candidates_observed, "max_evaluations": self._spend.rows,
                "max_train_cpu_s": self._spend.cpu_s})
        self.progress(Progress(
            phase=self._phase, proposed=n.proposed, done=n.done, in_flight=len(self.scheduler), queued=len(self._ready),
            best_fitness=n.best[1] if n.best else None, best_id=n.best[0] if n.best else None,
            failures=dict(n.failures), elapsed_s=elapsed, eta_s=eta))

    def _summary(self, reason: str, interrupted: bool, failure: str) -> RunSummary:
        st = self.store
        best = st.best(self.config.search_stages()[-1].name)
        return RunSummary(
            run_dir=str(st.run_dir), stop_reason=reason, interrupted=interrupted,
            proposed=len(st.candidates(include_reference=False)), evaluations=len(st.evaluations()),
            statuses=st.status_counts(), best=(best.candidate.id, best.evaluation.fitness) if best else None,
            promoted=[p.candidate_id for p in st.promotions("promoted") if p.passed], nodes=dict(self._n.nodes),
            failure=failure, not_started=self._n.not_started, cut=self._n.cut)

