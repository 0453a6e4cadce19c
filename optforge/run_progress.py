"""What the engine tells the user about a run: the live display (`Progress`, with the ETA of the first
search budget to run out), the elapsed time over all sessions (saved to the store every 5 s, so a
killed run loses at most that), the process running it (so that a reader tells a live run from a
killed one: `run_activity`, the one rule `ls`, `show` and `report` apply), and the `RunSummary` at
the end. It counts; it decides nothing."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

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
        """Record this process as the run's (`run_activity`), start the clock from the stored elapsed
        time, and the proposals and the best from the stored rows (the search sets its counters again
        as it takes up the stored proposals; a session that resumes at the funnel shows these)."""
        st = self.store
        st.set_meta(process=this_process())
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


RUNNING, KILLED = "running", "killed"
LIVE_S = 60.0
"""A live run writes its store every few seconds (the elapsed time every 5 s): a store of a run on
another machine unwritten for this long has lost its process."""


def this_process() -> dict[str, Any]:
    """The running process as `run_activity` checks it: host name, pid and start time (clock ticks
    since boot, from /proc; None without /proc), which tells a pid the system gave to another process
    apart."""
    stat = _proc_stat(os.getpid())
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": stat[1] if stat else None}


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process from /proc/PID/stat; None where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": comm may hold spaces
    return fields[0], int(fields[19])


def process_alive(process: Mapping[str, Any]) -> bool | None:
    """Whether a process that `this_process` recorded still runs: None for another host's (this one
    cannot ask), False once it is gone or a zombie, or its pid is another process's now."""
    if process.get("host") != socket.gethostname():
        return None
    pid = int(process["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state != "Z" and process.get("started") in (None, started)


def run_activity(store: Store, now: float | None = None) -> str:
    """The run's status as a reader can tell it: the stored one, with `running` checked. RUNNING while
    the process that runs it (recorded when its session started) is alive, when it runs on this host;
    on another host, or for a run from before processes were recorded, while its store was written in
    the last LIVE_S seconds. KILLED otherwise: the process died without saying so (SIGKILL, a crash, a
    lost machine). `ls`, `show` and `report` all ask here."""
    from optforge.store.db import DB_NAME

    status = store.meta("status", "unknown")
    if status != RUNNING:
        return status
    process = store.meta("process")
    alive = process_alive(process) if isinstance(process, Mapping) else None
    if alive is not None:
        return RUNNING if alive else KILLED
    files = [Path(store.run_dir) / name for name in (DB_NAME, DB_NAME + "-wal")]
    written = max((f.stat().st_mtime for f in files if f.exists()), default=0.0)
    return RUNNING if (time.time() if now is None else now) - written < LIVE_S else KILLED


def killed_hint(run_dir: Any) -> str:
    """What `show` and `report` say after `killed`."""
    return f"its process is gone without a clean end; continue it with optforge run --resume {run_dir}"
