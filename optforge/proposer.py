"""The proposer thread of the engine: it owns the strategy, so a slow (LLM) proposer overlaps evaluation.

It proposes while fewer than 2 x batch candidates are unresolved and observes each candidate's final
search-stage result. In deterministic mode it observes in proposal order and proposes the batch
starting at `s` only once exactly the candidates `< s - lag` are observed, so the strategy's inputs
never depend on completion order.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from optforge.search.base import Strategy
from optforge.types import Candidate, EvaluationResult

log = logging.getLogger(__name__)


class Proposer(threading.Thread):
    """Owns the strategy in a background thread: proposes ahead, observes results as they come.

    Only this thread calls the strategy. Everything it produces goes to `drain()` in order:
    ("proposals", cands, state), ("observed", id, state), ("finished", reason), ("error", exc).
    """

    def __init__(self, strategy: Strategy, *, deterministic: bool, batch: int, lag: int, next_seq: int,
                 n_observed: int, cap: int | None) -> None:
        super().__init__(name="optforge-proposer", daemon=True)
        self.strategy, self.deterministic, self.batch, self.lag = strategy, deterministic, batch, lag
        self.next_seq, self.n_observed, self.cap = next_seq, n_observed, cap
        self._results: dict[int, tuple[Candidate, EvaluationResult]] = {}
        self._cond = threading.Condition()
        self._out: queue.Queue = queue.Queue()
        self._stop_reason = ""
        self._finished = False
        self._starved = False  # the last propose() returned nothing: wait for an observation first
        self._shutdown = False

    def deliver(self, seq: int, cand: Candidate, result: EvaluationResult) -> None:
        with self._cond:
            self._results[seq] = (cand, result)
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
                        self._cond.wait(0.5)
                        action = self._next_action()
                    if self._shutdown:
                        return
                kind, arg = action
                if kind == "observe":
                    cand, result = arg
                    self.strategy.observe(cand, result)
                    self._out.put(("observed", cand.id, self.strategy.state()))
                elif kind == "propose":
                    cands = list(self.strategy.propose(arg))[:arg]
                    with self._cond:
                        self.next_seq += len(cands)
                        self.cap = None if self.cap is None else self.cap - len(cands)
                        self._starved = not cands
                    self._out.put(("proposals", cands, self.strategy.state()))
                else:
                    self._out.put(("finished", arg))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            self._out.put(("error", e))

    def _next_action(self) -> tuple[str, Any] | None:
        """What to do next (called under the lock). Observations come before proposals."""
        pending = self.next_seq - self.n_observed
        if self._results:
            seq = min(self._results)
            if not self.deterministic or (seq == self.n_observed and (
                    self._finished or self._starved or seq < self.next_seq - self.lag)):
                self.n_observed += 1
                self._starved = False
                return "observe", self._results.pop(seq)
        if self._finished:
            return None
        reason = self._stop_reason or ("max_candidates" if self.cap is not None and self.cap <= 0 else "")
        if not reason and self.strategy.done():
            reason = "strategy done"
        if not reason and self._starved and pending == 0:
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
