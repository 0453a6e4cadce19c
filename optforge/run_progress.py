"""What the engine tells the user about a run: the live display (`Progress`, with the ETA of the first
search budget to run out), the elapsed time over all sessions (saved to the store every 5 s, so a
killed run loses at most that), and the `RunSummary` at the end. It counts; it decides nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from optforge import budgets
from optforge.config import RunConfig
from optforge.run_outcome import Progress, RunSummary
from optforge.store import Store
from optforge.types import Candidate, EvaluationResult, Status


@dataclass
class Counters:
    """What the engine counts as it goes, over every session of the run (the engine starts them from
    the store on resume). Evaluations and failures are not counted here: `report` reads them from the
    store, so that they too are the run's, whatever answered them (a cache, a resumed session)."""

    proposed: int = 0  # strategy proposals (candidates and rollouts)
    candidates: int = 0  # of which candidates (what budget.max_candidates counts)
    observed: int = 0
    candidates_observed: int = 0  # what budget.max_candidates's ETA counts
    best: tuple[str, float] | None = None  # (candidate id, fitness) at the last search stage


class RunProgress:
    """The counters of one run and its clock. `show` gets a `Progress` at most twice a second."""

    def __init__(self, config: RunConfig, store: Store, show: Callable[[Progress], None] | None,
                 clock: Callable[[], float]) -> None:
        self.config, self.store, self.show, self.clock = config, store, show, clock
        self.n = Counters()
        self.phase = "search"  # then funnel:<stage>
        self._t0, self._elapsed0 = clock(), 0.0
        self._last_saved = 0.0
        self._last_shown = 0.0

    def restore(self) -> None:
        """Start the clock from the stored elapsed time, and the proposals and the best from the stored
        rows (the search sets its counters again as it takes up the stored proposals; a session that
        resumes at the funnel shows these)."""
        st = self.store
        self._t0, self._elapsed0 = self.clock(), float(st.meta("elapsed_s", 0.0))
        self.n.proposed = st.strategy_proposal_count()
        self.n.candidates = self.n.proposed - len(st.rollouts(refused=True))
        top = st.best(self.config.search_stages()[-1].name)
        self.n.best = (top.candidate.id, top.evaluation.aggregate.mean) if top else None

    def elapsed(self) -> float:
        """Seconds of search and funnel over all sessions of the run."""
        return self._elapsed0 + (self.clock() - self._t0)

    def track(self, cand: Candidate, result: EvaluationResult, *, final_stage: bool) -> None:
        """Keep a search candidate's final result if it is a new best (no store scans). Only stage
        evaluations come here (rollouts go straight to the strategy), so the live best is the best
        full-suite row; `restore` and `summary` take the store's ranking (`Store.best`)."""
        if result.ok and final_stage and (self.n.best is None or result.fitness > self.n.best[1]):
            self.n.best = (cand.id, result.fitness)

    def report(self, *, in_flight: int, queued: int, budget: budgets.SearchBudget) -> None:
        """Save the elapsed time (every 5 s) and show the progress (every 0.5 s). The ETA is given
        while the search runs unstopped; the funnel's remaining time is not estimated."""
        now = time.monotonic()
        if now - self._last_saved >= 5.0:
            self._last_saved = now
            self.store.set_meta(elapsed_s=self.elapsed())
        if self.show is None or now - self._last_shown < 0.5:
            return
        self._last_shown = now
        elapsed, n = self.elapsed(), self.n
        eta = None
        if self.phase == "search" and not budget.stopped:
            eta = budgets.eta_s(self.config.budget, elapsed_s=elapsed, used=budget.used(n.candidates_observed))
        # the store's rows, as `show` and the summary count them: every session's, every stage's
        statuses = self.store.status_counts()
        self.show(Progress(
            phase=self.phase, proposed=n.proposed, candidates=n.candidates, done=sum(statuses.values()),
            in_flight=in_flight, queued=queued, best_fitness=n.best[1] if n.best else None,
            best_id=n.best[0] if n.best else None,
            failures={k: v for k, v in statuses.items() if k != Status.OK.value}, elapsed_s=elapsed, eta_s=eta))

    def summary(self, reason: str, interrupted: bool, failure: str, *, nodes: dict[str, int], not_started: int,
                cut: int) -> RunSummary:
        """The run's summary from the store, with what the dispatcher counted (`dispatch.Dispatcher`)."""
        st = self.store
        best = st.best(self.config.search_stages()[-1].name)
        return RunSummary(
            run_dir=str(st.run_dir), stop_reason=reason, interrupted=interrupted,
            proposed=len(st.candidates(include_reference=False)), evaluations=len(st.evaluations()),
            statuses=st.status_counts(), best=(best.candidate.id, best.evaluation.aggregate.mean) if best else None,
            promoted=[p.candidate_id for p in st.promotions("promoted") if p.passed], nodes=dict(nodes),
            failure=failure, not_started=not_started, cut=cut)
