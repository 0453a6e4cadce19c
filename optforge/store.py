"""The run directory: `run.db`, SQLite in WAL mode, holding everything a run produced.

Every proposal and every result is committed the moment it exists. The strategy state (RNG included)
is written in the SAME transaction as the proposals it produced, and again with each observation, so
a `kill -9` can never leave the two disagreeing: resume loads the last state and finds exactly the
proposals and observations that state has seen (candidates.observed). Counters are derived from rows,
never from "max generation id".

Writers: the engine (and the LLM client through `record_llm_call`). Readers (show, export, report)
use `Store.open(run_dir)` and the read methods at the bottom; they get `Candidate`s and
`EvaluationRecord`s, never raw rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

from optforge.types import Candidate, EvaluationResult, Status

DB_NAME = "run.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    seq INTEGER PRIMARY KEY,            -- proposal order, 0-based
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    parents TEXT NOT NULL,              -- JSON list of ids
    strategy TEXT NOT NULL,
    note TEXT NOT NULL,                 -- JSON generator note
    created REAL NOT NULL,
    observed INTEGER NOT NULL DEFAULT 0 -- 1 once the strategy observed its search result
);
CREATE INDEX IF NOT EXISTS candidates_hash ON candidates(content_hash);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    candidate_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    stage TEXT NOT NULL,
    suite TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    seeds_spec TEXT NOT NULL,           -- what was asked: "selection", "fresh" or a JSON list
    seeds TEXT NOT NULL,                -- JSON list of the seeds actually used
    status TEXT NOT NULL,
    fitness REAL NOT NULL,
    metrics TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    feedback TEXT NOT NULL,
    attempts INTEGER NOT NULL,          -- 1 + retries after `lost`
    wall_s REAL NOT NULL,               -- engine-side wall time of the evaluation
    cached_from TEXT,                   -- candidate id whose identical request supplied this result
    fingerprint TEXT,                   -- the smoke stage's numeric fingerprint of the rule, if any
    created REAL NOT NULL,
    UNIQUE (candidate_id, stage)
);
CREATE INDEX IF NOT EXISTS evaluations_key ON evaluations(content_hash, stage, suite, seeds_spec);
CREATE INDEX IF NOT EXISTS evaluations_fingerprint ON evaluations(fingerprint);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY,
    model TEXT, prompt TEXT, response TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER,
    dollars REAL, latency_s REAL, created REAL,
    extra TEXT,                         -- JSON: any other fields of the call record
    finish_reason TEXT,                 -- why the model stopped: stop, length, ... (NULL: unknown)
    attempts INTEGER,                   -- HTTP requests of the call, retries included (NULL: in extra, or 1)
    call_id TEXT                        -- the client's id of the call: its final record replaces its in-flight one
);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, created REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS promotions (
    candidate_id TEXT NOT NULL, stage TEXT NOT NULL, passed INTEGER NOT NULL,
    value REAL, bar REAL, noise REAL, detail TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (candidate_id, stage)
);
CREATE TABLE IF NOT EXISTS strategy_state (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL);
"""


# llm_calls columns added after the first release: `Store(run_dir)` adds them to an older run.db
_LLM_ADDED_COLUMNS = (("finish_reason", "TEXT"), ("attempts", "INTEGER"), ("call_id", "TEXT"))


class StoreError(RuntimeError):
    """The run directory is missing, not a run, or cannot be used as asked."""


@dataclass(frozen=True)
class EvaluationRecord:
    """One stored evaluation: the `EvaluationResult` fields plus who, when and how it ran."""

    candidate_id: str
    stage: str
    status: Status
    suite: str
    suite_version: str
    seeds: tuple[int, ...]
    seeds_spec: str
    metrics: dict[str, Any]
    artifacts: dict[str, Any]
    feedback: str
    attempts: int = 1
    wall_s: float = 0.0
    cached_from: str | None = None
    created: float = 0.0

    @property
    def fitness(self) -> float:
        return float(self.metrics.get("fitness", -3.0))

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def result(self) -> EvaluationResult:
        return EvaluationResult(
            status=self.status, stage=self.stage, suite=self.suite, suite_version=self.suite_version,
            seeds=self.seeds, metrics=dict(self.metrics), artifacts=dict(self.artifacts), feedback=self.feedback,
        )


class Ranked(NamedTuple):
    """A candidate with its evaluation at one stage (unpacks as `cand, ev`)."""

    candidate: Candidate
    evaluation: EvaluationRecord


@dataclass(frozen=True)
class Promotion:
    """A funnel decision: did `candidate_id` pass `stage`, with the value compared and the bar."""

    candidate_id: str
    stage: str
    passed: bool
    value: float | None
    bar: float | None
    noise: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


def versions() -> dict[str, str]:
    """The versions a run's scores depend on; resume refuses a mismatch unless forced."""
    import torch

    import optforge

    return {
        "optforge": optforge.__version__,
        "torch": torch.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


class Store:
    """A run directory. `Store(run_dir)` creates or opens it for writing; `Store.open` for reading."""

    def __init__(self, run_dir: str | Path, *, create: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        if not create and not self.path.is_file():
            raise StoreError(f"{str(self.run_dir)!r} is not a run directory (no {DB_NAME}); pass the directory `optforge run` wrote")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process kill
        self._db.execute("PRAGMA foreign_keys=ON")
        if create:
            with self._lock:  # one transaction: a concurrent reader sees no tables or all of them
                self._db.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA + "\nCOMMIT;")
                self._add_llm_columns()

    @classmethod
    def open(cls, run_dir: str | Path) -> "Store":
        """Open an existing run for reading (raises StoreError if `run_dir` holds no run)."""
        return cls(run_dir, create=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write (nested calls join the outer transaction)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -------------------------------------------------------------------------------- writes

    def set_meta(self, **items: Any) -> None:
        with self.transaction() as db:
            for key, value in items.items():
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, _dumps(value)))

    def add_proposals(self, candidates: list[Candidate], state: Mapping[str, Any] | None) -> list[int]:
        """Store new proposals and the strategy state that produced them, atomically. Returns seqs."""
        with self.transaction() as db:
            seq = self.proposal_count()
            seqs = []
            for cand in candidates:
                db.execute(
                    "INSERT INTO candidates(seq, id, source, content_hash, parents, strategy, note, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, cand.id, cand.source, cand.content_hash, _dumps(list(cand.parents)), cand.strategy,
                     _dumps(dict(cand.note)), cand.created or time.time()),
                )
                seqs.append(seq)
                seq += 1
            if state is not None:
                self._put_state(db, state)
        return seqs

    def mark_observed(self, candidate_id: str, state: Mapping[str, Any] | None) -> None:
        """Record that the strategy observed `candidate_id`, with its state after observing."""
        with self.transaction() as db:
            db.execute("UPDATE candidates SET observed = 1 WHERE id = ?", (candidate_id,))
            if state is not None:
                self._put_state(db, state)

    def _put_state(self, db: sqlite3.Connection, state: Mapping[str, Any]) -> None:
        db.execute("INSERT OR REPLACE INTO strategy_state(key, state, updated) VALUES ('strategy', ?, ?)",
                   (_dumps(dict(state)), time.time()))

    def add_evaluation(self, candidate: Candidate, result: EvaluationResult, *, seeds_spec: str,
                       attempts: int = 1, wall_s: float = 0.0, cached_from: str | None = None) -> None:
        """Store the result of `candidate` at `result.stage` (replacing an earlier `lost` one)."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO evaluations(candidate_id, content_hash, stage, suite, suite_version,"
                " seeds_spec, seeds, status, fitness, metrics, artifacts, feedback, attempts, wall_s, cached_from,"
                " fingerprint, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (candidate.id, candidate.content_hash, result.stage, result.suite, result.suite_version, seeds_spec,
                 _dumps(list(result.seeds)), result.status.value, result.fitness, _dumps(result.metrics),
                 _dumps(result.artifacts), result.feedback, attempts, wall_s, cached_from,
                 result.artifacts.get("fingerprint"), time.time()),
            )

    def add_event(self, kind: str, **data: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events(created, kind, data) VALUES (?, ?, ?)", (time.time(), kind, _dumps(data)))

    def add_promotion(self, p: Promotion) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO promotions(candidate_id, stage, passed, value, bar, noise, detail, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (p.candidate_id, p.stage, int(p.passed), p.value, p.bar, p.noise, _dumps(p.detail),
                 p.created or time.time()),
            )

    def clear_promotions(self) -> None:
        """Drop every funnel decision (a run searching again decides its funnel anew; the funnel's
        evaluations stay, so they are cached)."""
        with self.transaction() as db:
            db.execute("DELETE FROM promotions")

    def _add_llm_columns(self) -> None:
        """Give an llm_calls table written before a column existed that column (old rows get NULL)."""
        with self.transaction() as db:
            have = {r[1] for r in db.execute("PRAGMA table_info(llm_calls)")}
            for name, kind in _LLM_ADDED_COLUMNS:
                if name not in have:
                    db.execute(f"ALTER TABLE llm_calls ADD COLUMN {name} {kind}")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS llm_calls_call_id ON llm_calls(call_id)")

    def record_llm_call(self, call: Any) -> None:
        """The LLM client's recorder: store one call (an LLMCall dataclass or a mapping). A record with
        the `call_id` of an earlier one (the call's in-flight record) replaces it, in its place."""
        d = dict(call) if isinstance(call, Mapping) else dict(getattr(call, "__dict__", {}))
        cols = ("model", "prompt", "response", "prompt_tokens", "completion_tokens", "dollars", "latency_s", "created",
                "finish_reason", "attempts", "call_id")
        row = [d.pop(c, None) for c in cols]
        if row[7] is None:
            row[7] = time.time()
        row[8] = row[8] or None  # "" (unknown) is stored as NULL
        row[10] = row[10] or None
        with self.transaction() as db:
            db.execute(
                "INSERT INTO llm_calls(model, prompt, response, prompt_tokens, completion_tokens, dollars, latency_s,"
                " created, finish_reason, attempts, call_id, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(call_id) DO UPDATE SET model = excluded.model, prompt = excluded.prompt,"
                " response = excluded.response, prompt_tokens = excluded.prompt_tokens,"
                " completion_tokens = excluded.completion_tokens, dollars = excluded.dollars,"
                " latency_s = excluded.latency_s, created = excluded.created, finish_reason = excluded.finish_reason,"
                " attempts = excluded.attempts, extra = excluded.extra",
                (*row, _dumps(d)),
            )

    # -------------------------------------------------------------------------------- reads

    def meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def config(self) -> dict[str, Any]:
        """The resolved config of the run (a `RunConfig.to_dict()` mapping)."""
        return self.meta("config", {})

    def strategy_state(self) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM strategy_state WHERE key = 'strategy'").fetchone()
        return json.loads(row["state"]) if row else None

    def proposal_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])

    def candidates(self, *, include_reference: bool = True) -> list[Candidate]:
        """All candidates in proposal order (funnel reference seeds have note['role'] == 'reference')."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM candidates ORDER BY seq").fetchall()
        cands = [_candidate(r) for r in rows]
        return cands if include_reference else [c for c in cands if c.note.get("role") != "reference"]

    def candidate(self, candidate_id: str) -> Candidate:
        """One candidate by id, or by a unique id prefix (raises KeyError naming the id)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM candidates WHERE id = ? OR id LIKE ? ORDER BY seq",
                                    (candidate_id, candidate_id.replace("%", "") + "%")).fetchall()
        exact = [r for r in rows if r["id"] == candidate_id]
        if exact or len(rows) == 1:
            return _candidate((exact or rows)[0])
        raise KeyError(f"no candidate '{candidate_id}' in {self.run_dir}" if not rows
                       else f"candidate id prefix '{candidate_id}' is ambiguous ({len(rows)} matches)")

    def seq_of(self, candidate_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        if row is None:
            raise KeyError(candidate_id)
        return int(row["seq"])

    def observed_ids(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM candidates WHERE observed = 1").fetchall()
        return {r["id"] for r in rows}

    def evaluations(self, candidate_id: str | None = None, stage: str | None = None) -> list[EvaluationRecord]:
        """Stored evaluations, oldest first, optionally of one candidate and/or one stage."""
        sql, args = "SELECT * FROM evaluations WHERE 1=1", []
        if candidate_id is not None:
            sql += " AND candidate_id = ?"
            args.append(candidate_id)
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [_evaluation(r) for r in rows]

    def evaluation(self, candidate_id: str, stage: str) -> EvaluationRecord | None:
        found = self.evaluations(candidate_id, stage)
        return found[0] if found else None

    def cached(self, content_hash: str, stage: str, suite: str, seeds_spec: str,
               suite_version: str | None = None) -> EvaluationRecord | None:
        """An earlier non-`lost` result of the identical request, or None."""
        sql = ("SELECT * FROM evaluations WHERE content_hash = ? AND stage = ? AND suite = ? AND seeds_spec = ?"
               " AND status != ?")
        args: list[Any] = [content_hash, stage, suite, seeds_spec, Status.LOST.value]
        if suite_version is not None:
            sql += " AND suite_version = ?"
            args.append(suite_version)
        with self._lock:
            row = self._db.execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
        return _evaluation(row) if row else None

    def leaderboard(self, stage: str = "train", *, limit: int | None = None,
                    include_reference: bool = False) -> list[Ranked]:
        """Candidates ranked by fitness at `stage` (failures last; ties by proposal order)."""
        cands = {c.id: (i, c) for i, c in enumerate(self.candidates())}
        evs = [e for e in self.evaluations(stage=stage) if e.candidate_id in cands]
        evs.sort(key=lambda e: (-e.fitness, cands[e.candidate_id][0]))
        out = [Ranked(cands[e.candidate_id][1], e) for e in evs]
        if not include_reference:
            out = [x for x in out if x.candidate.note.get("role") != "reference"]
        return out[:limit] if limit is not None else out

    def best(self, stage: str = "train") -> Ranked | None:
        """The best `ok` candidate at `stage`, or None when none is ok."""
        top = [r for r in self.leaderboard(stage) if r.evaluation.ok]
        return top[0] if top else None

    def promotions(self, stage: str | None = None) -> list[Promotion]:
        sql, args = "SELECT * FROM promotions", []
        if stage is not None:
            sql, args = sql + " WHERE stage = ?", [stage]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created", args).fetchall()
        return [Promotion(r["candidate_id"], r["stage"], bool(r["passed"]), r["value"], r["bar"], r["noise"],
                          json.loads(r["detail"]), r["created"]) for r in rows]

    def llm_calls(self) -> list[dict[str, Any]]:
        """Every LLM call in order, its `extra` fields merged in (a column wins over a NULL-free extra)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()
        out = []
        for r in rows:
            d = json.loads(r["extra"] or "{}")
            d.update({k: r[k] for k in r.keys() if k != "extra" and (r[k] is not None or k not in d)})
            out.append(d)
        return out

    def llm_spend(self) -> tuple[float, int]:
        """(dollars, HTTP requests) recorded so far; requests count retries, as budget.max_llm_calls does.
        Rows written before the `attempts` column keep the count in `extra`."""
        with self._lock:
            have = {r[1] for r in self._db.execute("PRAGMA table_info(llm_calls)")}
            attempts = "attempts, " if "attempts" in have else ""
            row = self._db.execute(
                "SELECT COALESCE(SUM(dollars), 0),"
                f" COALESCE(SUM(MAX(COALESCE({attempts}json_extract(extra, '$.attempts'), 1), 1)), 0) FROM llm_calls"
            ).fetchone()
        return float(row[0]), int(row[1])

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM events", []
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", [kind]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [{"created": r["created"], "kind": r["kind"], **json.loads(r["data"])} for r in rows]

    def status_counts(self, stage: str | None = None) -> dict[str, int]:
        sql, args = "SELECT status, COUNT(*) AS n FROM evaluations", []
        if stage is not None:
            sql, args = sql + " WHERE stage = ?", [stage]
        with self._lock:
            rows = self._db.execute(sql + " GROUP BY status", args).fetchall()
        return {r["status"]: int(r["n"]) for r in rows}


def _candidate(r: sqlite3.Row) -> Candidate:
    return Candidate(id=r["id"], source=r["source"], parents=tuple(json.loads(r["parents"])), strategy=r["strategy"],
                     note=json.loads(r["note"]), content_hash=r["content_hash"], created=r["created"])


def _evaluation(r: sqlite3.Row) -> EvaluationRecord:
    return EvaluationRecord(
        candidate_id=r["candidate_id"], stage=r["stage"], status=Status(r["status"]), suite=r["suite"],
        suite_version=r["suite_version"], seeds=tuple(json.loads(r["seeds"])), seeds_spec=r["seeds_spec"],
        metrics=json.loads(r["metrics"]), artifacts=json.loads(r["artifacts"]), feedback=r["feedback"],
        attempts=r["attempts"], wall_s=r["wall_s"], cached_from=r["cached_from"], created=r["created"],
    )


def _dumps(value: Any) -> str:
    """JSON with non-finite floats as null (SQLite and JSON readers cannot take NaN)."""
    return json.dumps(_finite(value), sort_keys=True, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars/arrays
        return _finite(value.tolist())
    return value
