"""The async loop that every strategy shares: proposals in, evaluations out, results back.

- **Proposals.** A background thread (`proposer.Proposer`) owns the strategy and proposes ahead, so a
  slow (LLM) proposer overlaps evaluation. A proposal is a new candidate (run through the search
  stages, smoke then train) or a `Rollout` of an observed one (one more evaluation row on some tasks
  and search seeds, checked by `optforge.rollouts`). The main thread stores everything the proposer
  produces, in order, with the strategy state and records that came with it. In deterministic mode
  the strategy's inputs never depend on completion order (see `proposer`).
- **Evaluations.** `optforge.dispatch` runs them on `config.slots` Ray slots (`optforge.scheduler`, the
  only Ray import), within the budgets, an identical request once (`optforge.result_cache`); failures
  are `lost` (retried), `timeout` or `crashed` there. This module stores each result and hands it on:
  to the next search stage, to the strategy, or to the promotion funnel (`optforge.funnel`).
- **Budgets** (`optforge.budgets`): max_candidates, max_evaluations, max_train_cpu_s, max_seconds,
  max_dollars, max_llm_calls. A reached budget stops new proposals; the rows, CPU and time budgets also
  drop the queued search evaluations, and max_seconds cuts the running ones. `RunSummary` says how many.
- **How a run ends.** Ctrl-C leaves a resumable store. A warm start that fails at the first stage, or
  a funnel reference at any stage, stops the run (`run_outcome.start_failure`). A rollout the engine
  refuses (a held-out task, a report seed, an unknown candidate...) is stored with the reason and
  handed back to the strategy as an `invalid` result (`rollouts.refusal`); the run goes on. Any other
  error that ends the run (the strategy raised) leaves status `failed` with the reason in meta
  `failure`, and is raised as `RunError`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from optforge import budgets
from optforge import funnel as funnel_lib
from optforge import jobs
from optforge import rollouts as rollout_lib
from optforge.config import RunConfig, StageConfig
from optforge.dispatch import Dispatcher
from optforge.evaluators.scoring import SCORE_VERSION
from optforge.jobs import Job
from optforge.proposer import Proposer
from optforge.result_cache import ResultCache
from optforge.run_outcome import (  # noqa: F401 - re-exported: the engine's public names
    FAILED_START, Progress, RunError, RunFailed, RunSummary, error_reason, start_failure,
)
from optforge.run_progress import RunProgress
from optforge.scheduler import EvaluateFn, RayScheduler
from optforge.search.base import Rollout, Strategy
from optforge.search.context import RecordSink
from optforge.store import RolloutRecord, Store, versions
from optforge.types import Candidate, EvaluationResult, Status

log = logging.getLogger(__name__)

RequestFactory = Callable[..., Any]
"""make_request(source=, stage=, suite=, seeds=, sandbox=, tune_wd=[, tasks=, lr_multipliers=, detail=])"""


class Engine:
    """Runs one strategy against one store. Collaborators are passed in: `evaluate` runs in a Ray task;
    `search_suite()` gives what rollouts may use (default: the run's suites, `SearchSuite.of`)."""

    def __init__(self, config: RunConfig, strategy: Strategy, store: Store, evaluate: EvaluateFn, *,
                 make_request: RequestFactory, suite_version: Callable[[str], str],
                 progress: Callable[[Progress], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 records: RecordSink | None = None, search_suite: Callable[[], rollout_lib.SearchSuite] | None = None,
                 llm_spend: Callable[[], tuple[float, int]] | None = None):
        self.config, self.strategy, self.store = config, strategy, store
        # the LLM client's (dollars, requests) when there is one: the store's rows also hold answers a
        # killed run got after its last commit, which a resumed strategy is handed again unspent
        # (optforge/llm/resumed.py), so counting them would stop a resumed search one answer early
        self._llm_spend = llm_spend or store.llm_spend
        self.records = records or RecordSink()
        self.cache = ResultCache(store, suite_version, SCORE_VERSION)
        self.budget = budgets.SearchBudget(config.budget)
        self.tally = RunProgress(config, store, progress, clock)
        self.dispatch = Dispatcher(config, store, self.cache, RayScheduler(evaluate, num_gpus=config.ray.num_gpus),
                                   self.budget, make_request=make_request, clock=clock, complete=self._complete)
        self._search_suite_fn = search_suite or (lambda: rollout_lib.search_suite_for(config))
        self._search_suite: rollout_lib.SearchSuite | None = None
        self._proposer: Proposer | None = None
        self._strategy_open = True

    # ------------------------------------------------------------------------------ entry point

    def run(self) -> RunSummary:
        """Search until a budget or the strategy stops, then run the promotion funnel."""
        st = self.store
        if st.meta("config") is None:
            st.set_meta(config=self.config.to_dict(), versions={**versions(), "score_version": SCORE_VERSION},
                        created=time.time(), lag=2 * self.config.slots, batch=self.config.slots)
        self.tally.restore()
        search = [s.name for s in self.config.search_stages()]
        self.budget.restore(st.evaluation_count(stages=search), st.train_cpu_seconds(stages=search), (
            (jobs.row_cost_class(ev), budgets.reported_cpu_s(ev.metrics)) for ev in st.evaluations()
            if ev.stage in search and ev.cached_from is None))
        st.set_meta(status="running")
        st.add_event("start", resumed=st.proposal_count() > 0)
        reason, interrupted, failure = st.meta("stop_reason", ""), False, ""
        try:
            if not st.meta("search_done", False):
                reason = self._search()
                st.set_meta(search_done=True, stop_reason=reason)
            self._close_strategy()
            self.tally.phase = "funnel"
            funnel_lib.run_funnel(st, self.config, self._run_to_completion)
            st.set_meta(status="finished")
        except KeyboardInterrupt:
            interrupted, reason = True, "interrupted"
            self.dispatch.cancel_all()
            st.set_meta(status="interrupted")
            st.add_event("interrupted")
        except RunFailed as e:
            reason, failure = "failed_start", str(e)
            self.dispatch.cancel_all()
            st.set_meta(status="failed", stop_reason=reason, failure=failure)
            st.add_event("failed", reason=failure)
        except BaseException as e:  # a strategy, LLM replay or engine error (SystemExit too): stored, then raised
            failure = error_reason(e)
            self.dispatch.cancel_all()
            st.set_meta(status="failed", stop_reason="error", failure=failure)
            st.add_event("failed", reason=failure, error=type(e).__name__)
            if isinstance(e, Exception):
                raise RunError(failure) from e
            raise
        finally:
            if self._proposer is not None:
                self._proposer.shutdown()
            self._close_strategy()
            st.set_meta(elapsed_s=self.tally.elapsed())
        d = self.dispatch
        return self.tally.summary(reason, interrupted, failure, nodes=d.nodes, not_started=d.not_started, cut=d.cut)

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
        n = self.tally.n
        n.proposed, n.observed, n.candidates = len(proposals), n_observed, n_cands
        n.candidates_observed = sum(isinstance(p, Candidate) and p.id in observed for p in proposals)
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
                    n.observed += 1
                    n.candidates_observed += rollout_id is None
                elif kind == "finished":
                    finished = args[0]
                elif kind == "error":
                    raise args[0]  # the strategy's own exception (a ReplayError, say), with its traceback
            b = self.budget
            if not stop and not finished:  # b.stopped: an evaluation the budgets refused to start
                stop = b.stopped or b.reason(self.tally.elapsed(), self._llm_spend)
                if stop:
                    prop.stop_proposing(stop)
            if not b.stopped and stop in budgets.EVALUATION_BUDGETS:  # these also stop what is queued
                self.dispatch.stop_search(stop)
            if not b.timed_out and b.deadline(self.tally.elapsed()):  # whatever stopped the proposals, the time cuts
                self.dispatch.stop_search("max_seconds")
            if finished and self.dispatch.idle() and prop.settled():
                return b.stopped or stop or finished
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
        self.tally.n.proposed += len(items)
        self.tally.n.candidates += len(cands)
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
            self.dispatch.push(jobs.rollout_job(self.config, self.cache, self.store, seq, r, self._suite().tasks))
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
            if existing is None and not self.dispatch.admit_free_row(job):
                return
            result = existing.result if existing else EvaluationResult.failure(
                Status.INVALID, str(cand.note.get("reason", "rejected by the strategy")), stage=first.name)
            self._complete(job, result, stored=existing is not None)
            return
        self.dispatch.push(job)

    def _stage_job(self, seq: int, cand: Candidate, stage: StageConfig, *, search: bool) -> Job:
        return jobs.stage_job(self.config, self.cache, seq, cand, stage, search=search)

    def _suite(self) -> rollout_lib.SearchSuite:
        if self._search_suite is None:
            self._search_suite = self._search_suite_fn()
        return self._search_suite

    # ------------------------------------------------------------------------------ results

    def _run_to_completion(self, jobs: list[tuple[int, Candidate, StageConfig]]) -> None:
        """Evaluate funnel jobs (seq, candidate, stage) and wait for all of them (`funnel.run_funnel`)."""
        for seq, cand, stage in jobs:
            self.tally.phase = f"funnel:{stage.name}"
            self.dispatch.push(self._stage_job(seq, cand, stage, search=False))
        while not self.dispatch.idle():
            self._step()

    def _step(self) -> None:
        self.dispatch.step()
        self.tally.report(in_flight=self.dispatch.in_flight, queued=self.dispatch.queued, budget=self.budget)

    def _complete(self, job: Job, result: EvaluationResult, *, stored: bool = False, wall_s: float = 0.0,
                  cached_from: str | None = None) -> None:
        """A job's answer: store it (unless `stored` already) and count it, then hand it on: a failed
        start stops the run; a search result goes to the strategy, or on to the next search stage."""
        if not stored:
            cpu_s = 0.0 if cached_from is not None else budgets.charged_cpu_s(result, wall_s)
            if cpu_s and "cpu_seconds" not in result.metrics:  # stored, so a resume counts the same
                result.metrics["cpu_seconds"] = round(cpu_s, 3)
                result.artifacts["cpu_seconds_from"] = "the wall time the evaluation held its slot (none measured)"
            self.store.add_evaluation(job.candidate, result, key=job.key, attempts=max(job.attempts, 1), wall_s=wall_s,
                                      cached_from=cached_from, rollout_id=job.rollout_id)
            self.store.set_meta(elapsed_s=self.tally.elapsed())
            if job.search:
                self.budget.add_row(id(job), jobs.job_cost_class(job), cpu_s, cached=cached_from is not None)
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
            self.tally.track(job.candidate, result, final_stage=job.stage.name == stages[-1].name)
        if final:
            self._proposer.deliver(job.seq, job.candidate, result)
            return
        self._proposer.deliver_partial(job.seq, job.candidate, result)
        nxt = self._stage_job(job.seq, job.candidate, stages[i + 1], search=True)
        twin = self.cache.twin(job.candidate, nxt.stage.name, nxt.key)
        if twin is None:
            self.dispatch.push(nxt)
        elif self.dispatch.admit_free_row(nxt):
            self._complete(nxt, twin[1], cached_from=twin[0])

