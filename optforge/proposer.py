"""The proposer thread of the engine: it owns the strategy, so a slow (LLM) proposer overlaps evaluation.

It proposes while fewer than 2 x batch proposals are unresolved and observes each one's final result
(a candidate's last search stage, or a rollout's row). In deterministic mode it observes in proposal
order and proposes the batch starting at `s` only once exactly the proposals `< s - lag` are
observed, so the strategy's inputs never depend on completion order.

An empty proposal with nothing left to observe ends the search ("strategy proposed nothing"), unless
the strategy says `busy()`: then it is asked again after the next observation, or after a short wait
(in deterministic mode only when nothing is left to observe). `done()` ends it.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from optforge.search.base import Rollout, Strategy
from optforge.search.context import RecordSink
from optforge.types import Candidate, EvaluationResult

log = logging.getLogger(__name__)

BUSY_RETRY_S = 0.2
"""How long a busy strategy's empty proposal waits before it is asked again (sooner on a result)."""


class Proposer(threading.Thread):
    """Owns the strategy in a background thread: proposes ahead, observes results as they come.

    Only this thread calls the strategy. Everything it produces goes to `drain()` in order, with the
    strategy records kept since the previous item: ("proposals", items, state, records),
    ("observed", candidate id, rollout id or None, state, records), ("finished", reason), ("error", exc).
    `cap` limits new candidates (budget.max_candidates), not rollouts.
    """

    def __init__(self, strategy: Strategy, *, deterministic: bool, batch: int, lag: int, next_seq: int,
                 n_observed: int, cap: int | None, records: RecordSink | None = None) -> None:
        super().__init__(name="optforge-proposer", daemon=True)
        self.strategy, self.deterministic, self.batch, self.lag = strategy, deterministic, batch, lag
        self.next_seq, self.n_observed, self.cap = next_seq, n_observed, cap
        self.records = records or RecordSink()
        self._results: dict[int, tuple[Candidate, Rollout | None, EvaluationResult]] = {}
        self._partials: dict[int, list[tuple[Candidate, EvaluationResult]]] = {}
        self._cond = threading.Condition()
        self._out: queue.Queue = queue.Queue()
        self._stop_reason = ""
        self._finished = False
        self._starved = False  # the last propose() returned nothing: wait for an observation first
        self._busy = False  # ... and the strategy said busy(): ask again after BUSY_RETRY_S
        self._shutdown = False
        self._acting = False  # an action taken under the lock is running outside it

    def deliver(self, seq: int, cand: Candidate, result: EvaluationResult, rollout: Rollout | None = None) -> None:
        with self._cond:
            self._results[seq] = (cand, rollout, result)
            self._cond.notify()

    def deliver_partial(self, seq: int, cand: Candidate, result: EvaluationResult) -> None:
        """An intermediate search-stage result (for the strategy's optional `observe_partial`)."""
        if not callable(getattr(self.strategy, "observe_partial", None)):
            return
        with self._cond:
            self._partials.setdefault(seq, []).append((cand, result))
            self._cond.notify()

    def stop_proposing(self, reason: str) -> None:
        with self._cond:
            self._stop_reason = reason
            self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout=30)

    def settled(self) -> bool:
        """Whether everything it can still observe is observed and handed to `drain()`. Once the search
        has finished, a result it can never observe (in deterministic mode, one after a proposal whose
        evaluation a budget stopped) does not count: a resume observes it."""
        with self._cond:
            if self._acting or not self._out.empty():
                return False
            if self.deterministic:
                return self.n_observed not in self._results
            return not self._results and not self._partials

    def drain(self) -> list[tuple]:
        items = []
        while True:
            try:
                items.append(self._out.get_nowait())
            except queue.Empty:
                return items

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    action = self._next_action()
                    while action is None and not self._shutdown:
                        self._cond.wait(BUSY_RETRY_S if self._busy else 0.5)
                        if self._busy and self._may_retry():
                            self._starved = self._busy = False  # ask the busy strategy again
                        action = self._next_action()
                    if self._shutdown:
                        return
                    self._acting = True
                try:
                    self._act(*action)
                finally:
                    with self._cond:
                        self._acting = False
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            self._out.put(("error", e))

    def _act(self, kind: str, arg: Any) -> None:
        st = self.strategy
        if kind == "partial":
            for cand, result in arg:
                st.observe_partial(cand, result)
        elif kind == "observe":
            partials, (cand, rollout, result) = arg
            for p_cand, p_result in partials:
                st.observe_partial(p_cand, p_result)
            hook = getattr(st, "observe_rollout", None)
            if rollout is not None and callable(hook):
                hook(rollout, result)
            else:
                st.observe(cand, result)
            self._out.put(("observed", cand.id, None if rollout is None else rollout.id, st.state(),
                           self.records.take()))
        elif kind == "propose":
            items = list(st.propose(arg))[:arg]
            busy = not items and bool(getattr(st, "busy", None) and st.busy())
            with self._cond:
                self.next_seq += len(items)
                n_new = sum(isinstance(p, Candidate) for p in items)
                self.cap = None if self.cap is None else self.cap - n_new
                self._starved, self._busy = not items, busy
            records = self.records.take()
            if items or records or not busy:  # a busy strategy's empty turns are not stored
                self._out.put(("proposals", items, st.state(), records))
        else:
            self._out.put(("finished", arg))

    def _may_retry(self) -> bool:
        """Whether a busy strategy's empty turn may be retried on a timer: in deterministic mode only when
        nothing is left to observe (else the next observation wakes it), so its inputs never depend on timing."""
        return not self.deterministic or self.next_seq == self.n_observed

    def _next_action(self) -> tuple[str, Any] | None:
        """What to do next (called under the lock). Observations come before proposals."""
        pending = self.next_seq - self.n_observed
        if self._results:
            seq = min(self._results)
            if not self.deterministic or (seq == self.n_observed and (
                    self._finished or self._starved or seq < self.next_seq - self.lag)):
                self.n_observed += 1
                self._starved = self._busy = False
                return "observe", (self._partials.pop(seq, []), self._results.pop(seq))
        if self._partials and not self.deterministic:
            seq = min(self._partials)
            return "partial", self._partials.pop(seq)
        if self._finished:
            return None
        reason = self._stop_reason or ("max_candidates" if self.cap is not None and self.cap <= 0 else "")
        if not reason and self.strategy.done():
            reason = "strategy done"
        if not reason and self._starved and not self._busy and pending == 0:
            reason = "strategy proposed nothing"
            log.warning("the strategy proposed nothing with nothing left to observe; stopping the search")
        if reason:
            self._finished = True
            return "finish", reason
        if self._starved:
            return None
        if self.deterministic:
            if self.n_observed < self.next_seq - self.lag:
                return None
            n = self.batch
        else:
            n = 2 * self.batch - pending
            if n <= 0:
                return None
        return "propose", n if self.cap is None else min(n, self.cap)
