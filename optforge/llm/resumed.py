"""Answers a killed run paid for and never used: a resumed run gets them again instead of asking twice.

The run's `llm_calls` rows are its call log, in order: a call's row takes its place when its first
request is recorded (the in-flight record, replaced in place by the final one). The client's `state()`,
which every LLM strategy saves in its state (committed with the proposals that state produced), holds a
`mark`: how many rows the log had then (`log_rows`) and which of those the state has not seen
(`unused_rows`: a held answer not asked for again yet, a call still out). Only the strategy's thread
calls the client and saves its state, so every other row before the mark is an answer that state used.

A row after the mark, or listed unused, is an answer given after the last commit: the killed run paid
for it, and no committed state has seen it. The resumed strategy, restored from that commit, asks the
same requests again; each is answered from the first such row with an equal `records.request_key`
(kind, model, sampling params, replay key), in log order, with no HTTP request and no new row. The
budget holds these rows' dollars and requests until their answers are used (`Budget.use_held`), so a
killed and resumed run counts each call once, as the uninterrupted run does. A request that matches no
held row goes out live. Rows recorded in flight were never answered: they stay counted and are never
used as answers.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from fractions import Fraction
from typing import Any, Iterable, Mapping

from optforge.llm.records import IN_FLIGHT
from optforge.llm.replay import RecordedCall, recorded_call

MARK_KEYS = ("log_rows", "unused_rows")


class CallLog:
    """The run's call log as this client knows it: the rows recorded before it started (`recorded`, in
    log order, as `Store.llm_calls` gives them) and the ones it records; thread-safe."""

    def __init__(self, recorded: Iterable[Mapping[str, Any]] = ()):
        self._recorded: tuple[RecordedCall, ...] = tuple(recorded_call(r) for r in recorded)
        self._rows = len(self._recorded)
        self._row_of: dict[str, int] = {}  # call id -> its row, while the call is out
        self._held: dict[str, deque[int]] = defaultdict(deque)  # request key -> held rows, in log order
        self._lock = threading.Lock()

    @property
    def recorded(self) -> tuple[RecordedCall, ...]:
        """The rows recorded before this client started, in log order."""
        return self._recorded

    def add(self, call_id: str, final: bool) -> None:
        """Count a record the client hands to the store: a new row unless its call already has one
        (`call_id`); `final` once the call's last record is written."""
        with self._lock:
            if not call_id:
                self._rows += 1
                return
            if call_id not in self._row_of:
                self._row_of[call_id] = self._rows
                self._rows += 1
            if final:
                del self._row_of[call_id]

    def mark(self) -> dict[str, Any]:
        """What a strategy state saved now has seen: `log_rows` rows, except `unused_rows`."""
        with self._lock:
            unused = {row for rows in self._held.values() for row in rows} | set(self._row_of.values())
            return {"log_rows": self._rows, "unused_rows": sorted(unused)}

    def hold(self, mark: Mapping[str, Any]) -> tuple[Fraction, int, Fraction, int]:
        """Hold the recorded answers the state with `mark` has not seen; returns (spent dollars, spent
        requests, held dollars, held requests) of the recorded rows, exact, for the budget. Holding
        again (the same state loaded twice) starts from the recorded rows again."""
        after = int(mark.get("log_rows", len(self._recorded)))
        unseen = {int(r) for r in mark.get("unused_rows", ())} | set(range(after, len(self._recorded)))
        spent, calls, held, held_calls = Fraction(0), 0, Fraction(0), 0
        queues: dict[str, deque[int]] = defaultdict(deque)
        for row, rec in enumerate(self._recorded):
            if row in unseen and rec.request_key and rec.error != IN_FLIGHT:
                queues[rec.request_key].append(row)
                held, held_calls = held + Fraction(rec.dollars), held_calls + rec.attempts
            else:
                spent, calls = spent + Fraction(rec.dollars), calls + rec.attempts
        with self._lock:
            self._held = queues
        return spent, calls, held, held_calls

    def take(self, key: str) -> RecordedCall | None:
        """The first held answer to a request with `key`, now used; None when none is held."""
        with self._lock:
            rows = self._held.get(key)
            if not rows:
                return None
            row = rows.popleft()
            if not rows:
                del self._held[key]
            return self._recorded[row]
