"""The async loop that every strategy shares (DESIGN section 8). The only module that imports `ray`.

- **Slots.** `config.slots` evaluations stay in flight as Ray tasks (`num_cpus=1`, `num_gpus` when
  asked); `ray.wait` hands back whichever finishes first.
- **Proposals.** A background thread (`proposer.Proposer`) owns the strategy: it proposes while fewer than
  2 x slots candidates are unresolved, so a slow (LLM) proposer overlaps evaluation, and it observes
  each candidate's final search-stage result. The main thread writes everything it produces to the
  store, in the order produced, proposals together with the state that made them.
- **Deterministic mode.** The proposer observes in proposal order, and proposes the batch starting at
  `s` only once exactly the candidates `< s - lag` are observed: the strategy's inputs never depend
  on completion order, so a seeded run (and a resumed one) is reproducible.
- **Cache.** (content hash, stage, suite, seeds, suite version): an identical request is evaluated
  once, also when two copies are in flight at the same time. `lost` is retried, never cached. A
  candidate whose program equals an earlier one's (`program_hash`: same syntax tree) gets that one's
  result at the stages after the first; a fingerprint measured in the sandbox never lends a result.
- **Failures.** Worker/node loss -> `lost` (retried `config.retries` times); an evaluation past
  `config.timeout_per_eval` is cancelled -> `timeout`; a raising evaluator -> `crashed`.
  Ctrl-C cancels in-flight work and leaves a resumable store.
- **Failed starts.** A warm start (`note["warm_start"]`) that ends invalid, crashed or lost at the
  first search stage, or a funnel reference that does so at any stage, stops the run at once
  (status `failed`, the reason in meta `failure`): every score is measured against them, so a broken
  install or sandbox must not run on as a search whose candidates all "crash". Diverged is a result.
- **Errors.** Any other exception that ends the run (the strategy raised, an LLM replay diverged)
  leaves status `failed` with the reason in meta `failure`, and is raised as `RunError`: a run's
  stored status is never `running` after its process stopped on an error.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from optforge import funnel as funnel_lib
from optforge.config import RunConfig, StageConfig
from optforge.evaluators.scoring import SCORE_VERSION
from optforge.program_identity import program_hash
from optforge.proposer import Proposer
from optforge.search.base import Strategy
from optforge.store import Store, versions
from optforge.types import Candidate, EvaluationResult, Status

log = logging.getLogger(__name__)

EvaluateFn = Callable[[Any], EvaluationResult]  # evaluate(request) -> result, run inside a Ray task
RequestFactory = Callable[..., Any]  # make_request(source=, stage=, suite=, seeds=, sandbox=, tune_wd=)

FAILED_START = frozenset({Status.INVALID, Status.CRASHED, Status.LOST})
"""Statuses with which a warm start or a reference stops the run (a broken setup, not a result)."""

_LOST_ERRORS = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError",
                "ObjectReconstructionFailedError", "RaySystemError", "TaskUnschedulableError", "ActorDiedError",
                "OutOfMemoryError", "TaskCancelledError")


def start_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None) -> bool:
    """Start Ray in-process (usage stats off, no dashboard) or join `address`; False if already up."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    address = address or os.environ.get("RAY_ADDRESS") or "local"  # "local": never join a stray cluster
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus or None, include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def _evaluate_in_task(evaluate: EvaluateFn, request: Any) -> dict[str, Any]:
    """Body of the Ray task: one torch thread (Ray reuses workers, so set it every time)."""
    import ray
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = evaluate(request)
    return {"result": result.to_dict(), "node": ray.get_runtime_context().get_node_id(),
            "wall_s": time.perf_counter() - t0}


_REMOTE: Any = None


def _remote() -> Any:
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(max_retries=0)(_evaluate_in_task)  # the engine retries `lost` itself
    return _REMOTE


@dataclass
class Progress:
    """A snapshot for the CLI's live display."""

    phase: str
    proposed: int
    done: int  # evaluations finished (all stages)
    in_flight: int
    queued: int
    best_fitness: float | None
    best_id: str | None
    failures: dict[str, int]
    elapsed_s: float
    eta_s: float | None


class RunFailed(RuntimeError):
    """A warm start or a reference failed (see FAILED_START); the message says which, where and why."""


class RunError(RuntimeError):
    """An error ended the run (the strategy raised, an LLM replay diverged, a store write failed).
    The store already says so (status `failed`, the reason in meta `failure`); the cause is chained."""


def error_reason(e: BaseException) -> str:
    """One line for the terminal and the store: the error's type and its message, whitespace collapsed."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def start_failure(candidate: Candidate, result: EvaluationResult, stage: str, first_stage: str) -> str | None:
    """Why this result of a warm start or reference stops the run, or None when it does not."""
    if result.status not in FAILED_START:
        return None
    if candidate.note.get("role") == "reference":
        role = "reference"
    elif candidate.note.get("warm_start") and stage == first_stage:
        role = "warm start"
    else:
        return None
    seed = candidate.note.get("seed")
    name = f"{candidate.id}" + (f" ({seed})" if seed and seed not in candidate.id else "")
    detail = " ".join(result.feedback.split()) or str(result.artifacts.get("exception", "")).strip()
    return f"{role} {name} ended {result.status.value} at {stage}: {detail or 'no reason recorded'}"


def reopen_search(store: Store, **why: Any) -> None:
    """Let a run whose search phase ended search again (it was resumed with a larger budget; the caller
    checked that it can go on, see `optforge.resume`). The funnel's decisions are dropped, to be made
    again over the larger pool; its evaluations stay and are cached. `why` goes into the event."""
    store.clear_promotions()
    store.set_meta(search_done=False, stop_reason="", correlation=None)
    store.add_event("search_reopened", **why)


@dataclass
class RunSummary:
    run_dir: str
    stop_reason: str
    interrupted: bool
    proposed: int
    evaluations: int
    statuses: dict[str, int]
    best: tuple[str, float] | None
    promoted: list[str] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> evaluations run there
    failure: str = ""  # why a failed start stopped the run (empty otherwise)


@dataclass
class _Job:
    seq: int
    candidate: Candidate
    stage: StageConfig
    search: bool
    attempts: int = 0
    ref: Any = None
    started: float = 0.0

    def spec(self, config: RunConfig) -> tuple[str, str, bool]:
        return funnel_lib.resolve_stage(self.stage, config)

    def key(self, config: RunConfig) -> tuple[str, str, str, str]:
        suite, seeds, _ = self.spec(config)
        return (self.candidate.content_hash, self.stage.name, suite, seeds)


class Engine:
    """Runs one strategy against one store. Collaborators are passed in (DESIGN rule 1)."""

    def __init__(self, config: RunConfig, strategy: Strategy, store: Store, evaluate: EvaluateFn, *,
                 make_request: RequestFactory, suite_version: Callable[[str], str],
                 progress: Callable[[Progress], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.config, self.strategy, self.store = config, strategy, store
        self.evaluate, self.make_request, self._suite_version_fn = evaluate, make_request, suite_version
        self.progress, self.clock = progress, clock
        self._suite_versions: dict[str, str] = {}
        self._ready: list[tuple[tuple, int, _Job]] = []
        self._counter = itertools.count()
        self._inflight: dict[Any, _Job] = {}  # ray ref -> job
        self._by_key: dict[tuple, _Job] = {}  # request key -> the in-flight job evaluating it
        self._waiters: dict[tuple, list[_Job]] = {}  # request key -> jobs waiting on that evaluation
        self._done = 0
        self._nodes: dict[str, int] = {}
        self._last_progress = 0.0
        self._phase = "search"
        self._best: tuple[str, float] | None = None
        self._failures: dict[str, int] = {}
        self._proposer: Proposer | None = None
        self._programs: dict[str, list[str]] = {}  # program_hash -> search candidate ids, in proposal order

    # ------------------------------------------------------------------------------ entry point

    def run(self) -> RunSummary:
        """Search until a budget or the strategy stops, then run the promotion funnel."""
        st = self.store
        if st.meta("config") is None:
            st.set_meta(config=self.config.to_dict(), versions={**versions(), "score_version": SCORE_VERSION},
                        created=time.time(),
                        lag=2 * self.config.slots, batch=self.config.slots)
        self._t0, self._elapsed0 = self.clock(), float(st.meta("elapsed_s", 0.0))
        top = st.best(self.config.search_stages()[-1].name)
        self._best = (top.candidate.id, top.evaluation.fitness) if top else None
        self._failures = {k: v for k, v in st.status_counts().items() if k != Status.OK.value}
        st.set_meta(status="running")
        st.add_event("start", resumed=st.proposal_count() > 0)
        reason, interrupted, failure = st.meta("stop_reason", ""), False, ""
        try:
            if not st.meta("search_done", False):
                reason = self._search()
                st.set_meta(search_done=True, stop_reason=reason)
            self._funnel()
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
            st.set_meta(elapsed_s=self._elapsed())
        summary = self._summary(reason, interrupted)
        summary.failure = failure
        return summary

    # ------------------------------------------------------------------------------ search

    def _search(self) -> str:
        st, cfg = self.store, self.config
        state = st.strategy_state()
        if state is not None:
            self.strategy.load_state(state)
        cands = st.candidates(include_reference=False)
        observed = st.observed_ids()
        cap = None if cfg.budget.max_candidates is None else max(0, cfg.budget.max_candidates - len(cands))
        lag = int(st.meta("lag", 2 * cfg.slots))
        batch = int(st.meta("batch", cfg.slots))
        self._proposer = prop = Proposer(self.strategy, deterministic=cfg.deterministic, batch=batch, lag=lag,
                                         next_seq=len(cands), n_observed=len(observed), cap=cap)
        self._n_proposed, self._n_observed = len(cands), len(observed)
        for seq, cand in enumerate(cands):  # resume: finish what the store says is unfinished
            self._index_program(cand)
            if cand.id not in observed:
                self._start_candidate(seq, cand)
        prop.start()
        finished, stop = "", ""
        while True:
            for kind, *args in prop.drain():
                if kind == "proposals":
                    self._on_proposals(*args)
                elif kind == "observed":
                    st.mark_observed(args[0], args[1])
                    self._n_observed += 1
                elif kind == "finished":
                    finished = args[0]
                elif kind == "error":
                    raise args[0]  # the strategy's own exception (a ReplayError, say), with its traceback
            if not stop and not finished:
                stop = self._budget_reason()
                if stop:
                    prop.stop_proposing(stop)
            if finished and not self._inflight and not self._ready and self._n_observed >= self._n_proposed:
                return stop or finished
            self._step()

    def _on_proposals(self, cands: list[Candidate], state: dict) -> None:
        self.store.add_proposals(cands, state)
        # the proposer counts strategy proposals; the store's seq also counts funnel references,
        # which a search reopened after its funnel (more budget) has stored before these
        first, self._n_proposed = self._n_proposed, self._n_proposed + len(cands)
        for seq, cand in enumerate(cands, first):
            self._index_program(cand)
            self._start_candidate(seq, cand)

    def _start_candidate(self, seq: int, cand: Candidate) -> None:
        first = self.config.search_stages()[0]
        if cand.note.get("status") == "invalid":
            existing = self.store.evaluation(cand.id, first.name)
            result = existing.result if existing else EvaluationResult.failure(
                Status.INVALID, str(cand.note.get("reason", "rejected by the strategy")), stage=first.name)
            if existing is None:
                self.store.add_evaluation(cand, result, seeds_spec="")
            failure = start_failure(cand, result, first.name, first.name)
            if failure:
                raise RunFailed(failure)
            self._proposer.deliver(seq, cand, result)
            return
        self._push(_Job(seq, cand, first, search=True))

    def _budget_reason(self) -> str:
        b = self.config.budget
        if b.max_seconds is not None and self._elapsed() >= b.max_seconds:
            return "max_seconds"
        if b.max_dollars is not None or b.max_llm_calls is not None:
            dollars, calls = self.store.llm_spend()
            if b.max_dollars is not None and dollars >= b.max_dollars:
                return "max_dollars"
            if b.max_llm_calls is not None and calls >= b.max_llm_calls:
                return "max_llm_calls"
        return ""

    # ------------------------------------------------------------------------------ funnel

    def _funnel(self) -> None:
        st, cfg = self.store, self.config
        stages = cfg.funnel_stages()
        for stage in stages:
            self._phase = f"funnel:{stage.name}"
            entrants = funnel_lib.entrants(stage, st, cfg)
            if not entrants:
                st.add_event("funnel_empty", stage=stage.name)
                break
            refs = funnel_lib.reference_candidates(cfg)
            known = {c.id for c in st.candidates()}
            new_refs = [c for c in refs if c.id not in known]
            if new_refs:
                st.add_proposals(new_refs, None)
            seq_of = {c.id: i for i, c in enumerate(st.candidates())}
            for cand in entrants + refs:
                cand = st.candidate(cand.id)
                if st.evaluation(cand.id, stage.name) is None:
                    self._push(_Job(seq_of[cand.id], cand, stage, search=False))
            while self._ready or self._inflight:
                self._step()
            for decision in funnel_lib.decide(stage, st, cfg, entrants):
                st.add_promotion(decision)
        if stages:
            funnel_lib.record_promoted(st, cfg)

    # ------------------------------------------------------------------------------ scheduling

    def _push(self, job: _Job) -> None:
        order = (0 if job.search else 1, job.seq, funnel_lib.stage_index(job.stage.name))
        heapq.heappush(self._ready, (order, next(self._counter), job))

    def _step(self) -> None:
        self._fill_slots()
        self._poll(0.05)
        self._report()

    def _fill_slots(self) -> None:
        while self._ready and len(self._inflight) < self.config.slots:
            _, _, job = heapq.heappop(self._ready)
            key = job.key(self.config)
            suite, seeds, tune_wd = job.spec(self.config)
            hit = self.store.cached(*key, suite_version=self._suite_version(suite))
            if hit is not None:
                same = hit.candidate_id == job.candidate.id
                self._complete(job, hit.result, stored=same, cached_from=None if same else hit.candidate_id)
                continue
            if key in self._by_key:
                self._waiters.setdefault(key, []).append(job)
                continue
            request = self.make_request(source=job.candidate.source, stage=job.stage.name, suite=suite, seeds=seeds,
                                        sandbox=self.config.sandbox.request_dict(), tune_wd=tune_wd)
            opts: dict[str, Any] = {"num_cpus": 1}
            if self.config.ray.num_gpus:
                opts["num_gpus"] = self.config.ray.num_gpus
            job.ref = _remote().options(**opts).remote(self.evaluate, request)
            job.attempts += 1
            job.started = self.clock()
            self._inflight[job.ref] = job
            self._by_key[key] = job

    def _poll(self, timeout: float) -> None:
        import ray

        if not self._inflight:
            time.sleep(timeout) if not self._ready else None
            return
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            job = self._inflight.pop(ref)
            try:
                out = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - every Ray failure becomes a status
                self._on_error(job, e)
                continue
            self._nodes[out["node"]] = self._nodes.get(out["node"], 0) + 1
            self._finish(job, EvaluationResult.from_dict(out["result"]), wall_s=out["wall_s"])
        now = self.clock()
        for ref, job in list(self._inflight.items()):
            if now - job.started > self.config.timeout_per_eval:
                ray.cancel(ref, force=True)
                del self._inflight[ref]
                limit = self.config.timeout_per_eval
                self._finish(job, EvaluationResult.failure(
                    Status.TIMEOUT, f"the evaluation ran past the engine limit of {limit:.0f} s and was cancelled;"
                    " the rule is too slow or hangs", stage=job.stage.name), wall_s=now - job.started)

    def _on_error(self, job: _Job, e: Exception) -> None:
        import ray.exceptions as rex

        name = type(e).__name__
        lost_types = tuple(getattr(rex, n) for n in _LOST_ERRORS if hasattr(rex, n))
        # a Python exception raised by the evaluator itself is `crashed`; anything Ray-side is `lost`
        lost = isinstance(e, lost_types) or not isinstance(e, rex.RayTaskError)
        key = job.key(self.config)
        if lost and job.attempts <= self.config.retries:
            log.warning("evaluation of %s at %s lost (%s); retrying", job.candidate.id, job.stage.name, name)
            self.store.add_event("lost", candidate=job.candidate.id, stage=job.stage.name, error=name,
                                 attempt=job.attempts)
            self._by_key.pop(key, None)
            self._push(job)
            return
        status = Status.LOST if lost else Status.CRASHED
        text = str(e)[-2000:]
        log.error("evaluation of %s at %s failed in the engine: %s", job.candidate.id, job.stage.name, text)
        self._finish(job, EvaluationResult.failure(
            status, f"the evaluation failed outside the candidate's sandbox ({name}); see artifacts.exception",
            stage=job.stage.name, exception=text), wall_s=self.clock() - job.started)

    def _finish(self, job: _Job, result: EvaluationResult, *, wall_s: float) -> None:
        key = job.key(self.config)
        self._by_key.pop(key, None)
        if not result.stage:
            result.stage = job.stage.name
        self._complete(job, result, wall_s=wall_s)
        for waiter in self._waiters.pop(key, []):
            if result.status.cacheable:
                self._complete(waiter, result, cached_from=job.candidate.id)
            else:
                self._push(waiter)

    def _complete(self, job: _Job, result: EvaluationResult, *, stored: bool = False, wall_s: float = 0.0,
                  cached_from: str | None = None) -> None:
        self._done += 1
        if not stored:
            _, seeds, _ = job.spec(self.config)
            self.store.add_evaluation(job.candidate, result, seeds_spec=seeds, attempts=max(job.attempts, 1),
                                      wall_s=wall_s, cached_from=cached_from)
            self.store.set_meta(elapsed_s=self._elapsed())
        failure = start_failure(job.candidate, result, job.stage.name, self.config.search_stages()[0].name)
        if failure:
            raise RunFailed(failure)
        if not job.search:
            return
        stages = self.config.search_stages()
        i = [s.name for s in stages].index(job.stage.name)
        final = not (result.ok and i + 1 < len(stages))
        if not stored and (final or job.stage.name == stages[-1].name):
            self._track(job.candidate, result, final_stage=job.stage.name == stages[-1].name)
        if not final:
            nxt = _Job(job.seq, job.candidate, stages[i + 1], search=True)
            twin = self._twin_result(job.candidate, result, nxt)
            if twin is not None:
                self._complete(nxt, twin[1], cached_from=twin[0])
            else:
                self._push(nxt)
        elif self._proposer is not None:
            self._proposer.deliver(job.seq, job.candidate, result)

    def _twin_result(self, cand: Candidate, result: EvaluationResult, nxt: _Job) -> tuple[str, EvaluationResult] | None:
        """The result of an earlier candidate with the same program (`program_hash`: the same syntax
        tree, other comments or layout) at the next stage, so a reformatted copy is not trained twice.
        Never lent on a fingerprint measured in the sandbox: the candidate controls that evidence."""
        if self.store.evaluation(cand.id, nxt.stage.name) is not None:
            return None
        suite, seeds, _ = nxt.spec(self.config)
        program = program_hash(cand.source)
        for other in self._programs.get(program, []):
            if other == cand.id:
                continue
            ev = self.store.evaluation(other, nxt.stage.name)
            if ev is not None and ev.status.cacheable and ev.suite_version == self._suite_version(suite) \
                    and ev.seeds_spec == seeds:
                twin = ev.result
                twin.feedback = (f"the same program as candidate {other} (identical syntax tree; only comments or "
                                 f"layout differ). {twin.feedback}")
                self.store.add_event("duplicate", candidate=cand.id, of=other, program=program)
                return other, twin
        return None

    def _index_program(self, cand: Candidate) -> None:
        self._programs.setdefault(program_hash(cand.source), []).append(cand.id)

    def _track(self, cand: Candidate, result: EvaluationResult, *, final_stage: bool) -> None:
        """Running best and failure counts for the progress display (no store scans)."""
        if not result.ok:
            self._failures[result.status.value] = self._failures.get(result.status.value, 0) + 1
        elif final_stage and (self._best is None or result.fitness > self._best[1]):
            self._best = (cand.id, result.fitness)

    def _cancel_all(self) -> None:
        try:
            import ray

            for ref, job in self._inflight.items():
                # a gentle cancel keeps the worker for a resume in this process; when the driver
                # exits, Ray kills whatever of its job still runs
                ray.cancel(ref, force=False)
                self.store.add_event("cancelled", candidate=job.candidate.id, stage=job.stage.name,
                                     status=Status.LOST.value)
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("could not cancel in-flight evaluations: %s", e)
        self._inflight.clear()

    # ------------------------------------------------------------------------------ reporting

    def _suite_version(self, suite: str) -> str:
        if suite not in self._suite_versions:
            self._suite_versions[suite] = str(self._suite_version_fn(suite))
            stored = dict(self.store.meta("suite_versions", {}))
            if stored.get(suite) != self._suite_versions[suite]:
                stored[suite] = self._suite_versions[suite]
                self.store.set_meta(suite_versions=stored)
        return self._suite_versions[suite]

    def _elapsed(self) -> float:
        return self._elapsed0 + (self.clock() - self._t0)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last_progress < 0.5):
            return
        self._last_progress = now
        elapsed = self._elapsed()
        eta = None
        b = self.config.budget
        if b.max_candidates and self._n_observed_safe():
            eta = elapsed / self._n_observed_safe() * max(0, b.max_candidates - self._n_observed_safe())
        if b.max_seconds is not None:
            eta = min(eta if eta is not None else float("inf"), max(0.0, b.max_seconds - elapsed))
        self.progress(Progress(
            phase=self._phase, proposed=getattr(self, "_n_proposed", 0), done=self._done, in_flight=len(self._inflight),
            queued=len(self._ready), best_fitness=self._best[1] if self._best else None,
            best_id=self._best[0] if self._best else None, failures=dict(self._failures), elapsed_s=elapsed, eta_s=eta))

    def _n_observed_safe(self) -> int:
        return getattr(self, "_n_observed", 0)

    def _summary(self, reason: str, interrupted: bool) -> RunSummary:
        st = self.store
        best = st.best(self.config.search_stages()[-1].name)
        return RunSummary(
            run_dir=str(st.run_dir), stop_reason=reason, interrupted=interrupted,
            proposed=len(st.candidates(include_reference=False)), evaluations=len(st.evaluations()),
            statuses=st.status_counts(), best=(best.candidate.id, best.evaluation.fitness) if best else None,
            promoted=[p.candidate_id for p in st.promotions("promoted") if p.passed], nodes=dict(self._nodes))
