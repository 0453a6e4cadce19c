"""Answer LLM requests from a previous run's recorded calls, so an LLM-driven run re-executes offline.

Calls are read (read-only) from RUN_DIR/run.db, table llm_calls, in recorded order and grouped by
prompt hash: the k-th request with a given prompt gets the k-th recorded response to that prompt.
A request the recording never saw is an error: the replayed run has diverged from the recorded one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from optforge.llm.records import IN_FLIGHT, prompt_hash


class ReplayError(RuntimeError):
    """The recording cannot answer this request (missing run, or a prompt it never saw)."""


@dataclass(frozen=True)
class RecordedCall:
    model: str
    response: str
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    error: str = ""
    attempts: int = 1
    finish_reason: str = ""
    reasoning: str = ""
    prompt: str = ""
    prompt_hash: str = ""
    request_key: str = ""  # `records.request_key`; "" in records from before it was kept
    call_id: str = ""


def recorded_call(row: Mapping[str, Any]) -> RecordedCall:
    """One llm_calls row (a raw row with its `extra` JSON, or a row as `Store.llm_calls` gives it) as a
    RecordedCall; fields without a column of their own are kept in `extra`."""
    r = dict(row)
    try:
        extra = json.loads(r.get("extra") or "{}")
    except (TypeError, json.JSONDecodeError):
        extra = {}
    if isinstance(extra, dict):
        r = {**extra, **{k: v for k, v in r.items() if v is not None}}
    prompt = str(r.get("prompt") or "")
    return RecordedCall(
        model=str(r.get("model") or ""),
        response=str(r.get("response") or ""),
        prompt_tokens=int(r.get("prompt_tokens") or 0),
        completion_tokens=int(r.get("completion_tokens") or 0),
        dollars=float(r.get("dollars") or 0.0),
        error=str(r.get("error") or ""),
        attempts=max(int(r.get("attempts") or 1), 1),
        finish_reason=str(r.get("finish_reason") or ""),
        reasoning=str(r.get("reasoning") or ""),
        prompt=prompt,
        prompt_hash=str(r.get("prompt_hash") or prompt_hash(prompt)),
        request_key=str(r.get("request_key") or ""),
        call_id=str(r.get("call_id") or ""),
    )


class Replayer:
    """Thread-safe queues of recorded responses keyed by prompt hash."""

    def __init__(self, calls: list[tuple[str, RecordedCall]], source: str = "<memory>"):
        self.source = source
        self._queues: dict[str, deque[RecordedCall]] = defaultdict(deque)
        for phash, rec in calls:
            self._queues[phash].append(rec)
        self._total = len(calls)
        self._answered = 0
        self._lock = threading.Lock()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> "Replayer":
        db = Path(run_dir)
        db = db if db.suffix == ".db" else db / "run.db"
        if not db.is_file():
            raise ReplayError(f"llm.replay: no run database at {db}; point llm.replay at a previous run's directory")
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        except sqlite3.Error as e:
            raise ReplayError(f"llm.replay: cannot open {db} read-only: {e}") from e
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(llm_calls)")]
            if not cols:
                raise ReplayError(f"llm.replay: {db} has no llm_calls table; was it an LLM-driven run?")
            for need in ("prompt", "response"):
                if need not in cols:
                    raise ReplayError(f"llm.replay: {db} llm_calls lacks column '{need}'")
            rows = conn.execute("SELECT * FROM llm_calls ORDER BY rowid").fetchall()
        except sqlite3.Error as e:
            raise ReplayError(f"llm.replay: cannot read llm_calls from {db}: {e}") from e
        finally:
            conn.close()
        calls = []
        for row in rows:
            rec = recorded_call(dict(zip(cols, row)))
            if rec.error == IN_FLIGHT:
                continue  # the recorded run stopped while waiting; its resumed run asked again
            calls.append((rec.prompt_hash, rec))
        return cls(calls, source=str(db))

    def answer(self, phash: str, model: str = "") -> RecordedCall:
        """The next recorded response to the prompt with hash `phash`."""
        with self._lock:
            queue = self._queues.get(phash)
            if not queue:
                seen = "was answered already as often as recorded" if phash in self._queues else "was never recorded"
                raise ReplayError(
                    f"llm.replay from {self.source}: prompt {phash} (model {model or '?'}) {seen}; "
                    f"{self._answered} of {self._total} recorded calls were replayed. The run diverged from the "
                    "recorded one: replay needs the same config, seed and deterministic: true"
                )
            self._answered += 1
            return queue.popleft()

    @property
    def remaining(self) -> int:
        with self._lock:
            return self._total - self._answered
