"""The run directory: `run.db`, SQLite in WAL mode, holding everything a run produced.

Every proposal and every result is committed the moment it exists. The strategy state (RNG included)
is written in the SAME transaction as the proposals it produced (candidates and rollouts) and the
strategy records it kept, and again with each observation, so a `kill -9` can never leave them
disagreeing: resume loads the last state and finds exactly the proposals and observations that
state has seen (`observed`). Counters are derived from rows, never from "max generation id".

Three ways to open a run:
- `Store(run_dir)`: create one, or open a current-schema one for writing (the engine);
- `Store.open(run_dir)`: read only (show, report, export, ls). SQLite opens the file read-only, so
  nothing is ever written to it; a run from an older schema is read through a migrated in-memory copy;
- `Store.resume(run_dir)`: for `optforge run --resume`. An older schema is first copied to
  `run.db.v0`, then migrated in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from optforge.store import schema
from optforge.store.reads import Reads
from optforge.store.rows import Promotion, RequestKey, RolloutRecord, StrategyRecord, dumps, dumps_finite
from optforge.types import Candidate, EvaluationResult

DB_NAME = "run.db"
BACKUP_SUFFIX = ".v0"


class StoreError(RuntimeError):
    """The run directory is missing, not a run, or cannot be used as asked."""


def versions() -> dict[str, str]:
    """The versions a run's scores depend on; resume refuses a mismatch unless forced."""
    import torch

    import optforge

    return {
        "optforge": optforge.__version__,
        "torch": torch.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def _connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(target, timeout=30.0, isolation_level=None, check_same_thread=False, uri=uri)
    db.row_factory = sqlite3.Row
    return db


class Store(Reads):
    """A run directory. See the module docstring for the three ways to open one."""

    def __init__(self, run_dir: str | Path, *, create: bool = True, _db: sqlite3.Connection | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        self._lock = threading.RLock()
        self.read_only = _db is not None
        if _db is not None:
            self._db = _db
            return
        if not create and not self.path.is_file():
            raise StoreError(_not_a_run(self.run_dir))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._db = _connect(str(self.path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process kill
        with self.transaction() as db:  # one transaction: a concurrent reader sees no tables or all of them
            found = schema.schema_version(db)
            if found is None:
                schema.create(db)
        if found is not None and found != schema.SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"{self.run_dir} holds a run of store schema version {found} (this optforge writes "
                             f"{schema.SCHEMA_VERSION}); `optforge run --resume {self.run_dir}` migrates it, "
                             f"keeping the old database as {DB_NAME}{BACKUP_SUFFIX}")

    @classmethod
    def open(cls, run_dir: str | Path) -> "Store":
        """Open an existing run read-only (raises StoreError if `run_dir` holds no run). Nothing is
        written to the run directory: an older schema is migrated in an in-memory copy."""
        path = Path(run_dir) / DB_NAME
        if not path.is_file():
            raise StoreError(_not_a_run(Path(run_dir)))
        # without a -wal file no connection has the database open for writing: `immutable` then reads it
        # without creating -wal and -shm files (a read-only WAL connection would leave both behind)
        quiet = "" if path.with_name(DB_NAME + "-wal").exists() else "&immutable=1"
        db = _connect(f"{path.resolve().as_uri()}?mode=ro{quiet}", uri=True)
        found = schema.schema_version(db)
        if found != schema.SCHEMA_VERSION:
            memory = _connect(":memory:")
            db.backup(memory)
            db.close()
            db = memory
            db.execute("BEGIN IMMEDIATE")
            try:
                schema.migrate(db)
            except ValueError as e:
                raise StoreError(f"{run_dir}: {e}") from e
            db.execute("COMMIT")
        return cls(run_dir, _db=db)

    @classmethod
    def resume(cls, run_dir: str | Path) -> "Store":
        """Open an existing run for writing, migrating an older schema first: the database is copied to
        `run.db.v0` (a consistent copy, the WAL included), then migrated in one transaction."""
        path = Path(run_dir) / DB_NAME
        if not path.is_file():
            raise StoreError(_not_a_run(Path(run_dir)))
        db = _connect(str(path))
        try:
            found = schema.schema_version(db)
            if found is not None and found != schema.SCHEMA_VERSION:
                backup = path.with_name(DB_NAME + BACKUP_SUFFIX)
                if backup.exists():
                    raise StoreError(f"{backup} exists already; move it away to migrate {path} again")
                with contextlib.closing(_connect(str(backup))) as copy:
                    db.backup(copy)
                db.execute("BEGIN IMMEDIATE")
                try:
                    schema.migrate(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except ValueError as e:
            raise StoreError(f"{run_dir}: {e}") from e
        finally:
            db.close()
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
        if self.read_only:
            raise StoreError(f"{self.run_dir} was opened read-only (Store.open); nothing may be written to it")
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
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, dumps(value)))

    def add_proposals(self, candidates: list[Candidate], state: Mapping[str, Any] | None, *,
                      rollouts: list[RolloutRecord] = (), records: list[StrategyRecord] = ()) -> list[int]:
        """Store new proposals, the strategy records and the strategy state that produced them, atomically.
        `rollouts` carry their `pseq`; candidates get theirs here, continuing the strategy's proposal order
        (funnel references, `note["role"] == "reference"`, stay outside it). Returns the candidates' seqs."""
        with self.transaction() as db:
            seq = self.proposal_count()
            taken = {r.pseq for r in rollouts}
            pseq = self.strategy_proposal_count()
            seqs = []
            for cand in candidates:
                strategy = cand.note.get("role") != "reference"
                while strategy and pseq in taken:
                    pseq += 1
                db.execute(
                    "INSERT INTO candidates(seq, id, source, content_hash, parents, strategy, note, created, pseq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, cand.id, cand.source, cand.content_hash, dumps(list(cand.parents)), cand.strategy,
                     dumps(dict(cand.note)), cand.created or time.time(), pseq if strategy else None),
                )
                seqs.append(seq)
                seq += 1
                pseq += 1 if strategy else 0
            for r in rollouts:
                db.execute(
                    "INSERT INTO rollouts(pseq, candidate_id, stage, tasks, seeds, reuse_lr, detail, repeat, note,"
                    " created, refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.pseq, r.candidate_id, r.stage, None if r.tasks is None else dumps(list(r.tasks)),
                     dumps(list(r.seeds)), int(r.reuse_lr), r.detail, int(r.repeat), dumps(dict(r.note)),
                     r.created or time.time(), r.refused))
            self._add_records(db, records)
            if state is not None:
                self._put_state(db, state)
        return seqs

    def mark_observed(self, candidate_id: str | None, state: Mapping[str, Any] | None, *,
                      rollout_id: int | None = None, records: list[StrategyRecord] = ()) -> None:
        """Record that the strategy observed a candidate (or a rollout), with its state and records after."""
        with self.transaction() as db:
            if rollout_id is not None:
                db.execute("UPDATE rollouts SET observed = 1 WHERE id = ?", (rollout_id,))
            else:
                db.execute("UPDATE candidates SET observed = 1 WHERE id = ?", (candidate_id,))
            self._add_records(db, records)
            if state is not None:
                self._put_state(db, state)

    def add_records(self, records: list[StrategyRecord], state: Mapping[str, Any] | None = None) -> None:
        """Append strategy records (with the state that kept them, when given)."""
        with self.transaction() as db:
            self._add_records(db, records)
            if state is not None:
                self._put_state(db, state)

    def _add_records(self, db: sqlite3.Connection, records: list[StrategyRecord]) -> None:
        for r in records:
            db.execute("INSERT INTO strategy_records(kind, candidate_id, data, created) VALUES (?, ?, ?, ?)",
                       (r.kind, r.candidate_id, dumps(dict(r.data)), r.created or time.time()))

    def _put_state(self, db: sqlite3.Connection, state: Mapping[str, Any]) -> None:
        db.execute("INSERT OR REPLACE INTO strategy_state(key, state, updated) VALUES ('strategy', ?, ?)",
                   (dumps(dict(state)), time.time()))

    def add_evaluation(self, candidate: Candidate, result: EvaluationResult, *, key: RequestKey | None = None,
                       seeds_spec: str = "selection", attempts: int = 1, wall_s: float = 0.0,
                       cached_from: str | None = None, rollout_id: int | None = None) -> None:
        """Append one evaluation row of `candidate` at `result.stage` for the request `key` (without one: a
        stage evaluation on `seeds_spec` with the default request, all tasks, detail summary)."""
        if key is None:
            key = RequestKey(candidate.content_hash, result.stage, result.suite, result.suite_version, seeds_spec)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO evaluations(candidate_id, content_hash, stage, suite, suite_version, seeds_spec, seeds,"
                " status, fitness, metrics, artifacts, feedback, attempts, wall_s, cached_from, fingerprint, created,"
                " tasks, detail, tune_wd, reuse_lr, score_version, rollout_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (candidate.id, candidate.content_hash, result.stage, result.suite or key.suite,
                 result.suite_version or key.suite_version, key.seeds_spec, dumps(list(result.seeds)),
                 result.status.value, result.fitness, dumps(result.metrics), dumps(result.artifacts), result.feedback,
                 attempts, wall_s, cached_from, result.artifacts.get("fingerprint"), time.time(),
                 None if key.tasks is None else dumps(list(key.tasks)), key.detail, int(key.tune_wd),
                 int(key.reuse_lr), key.score_version, rollout_id),
            )

    def add_event(self, kind: str, **data: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events(created, kind, data) VALUES (?, ?, ?)", (time.time(), kind, dumps(data)))

    def add_promotion(self, p: Promotion) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO promotions(candidate_id, stage, passed, value, bar, noise, detail, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (p.candidate_id, p.stage, int(p.passed), p.value, p.bar, p.noise, dumps(p.detail),
                 p.created or time.time()),
            )

    def clear_promotions(self) -> None:
        """Drop every funnel decision (a run searching again decides its funnel anew; the funnel's
        evaluations stay, so they are cached)."""
        with self.transaction() as db:
            db.execute("DELETE FROM promotions")

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
                (*row, dumps_finite(d)),
            )


def _not_a_run(run_dir: Path) -> str:
    return f"{str(run_dir)!r} is not a run directory (no {DB_NAME}); pass the directory `optforge run` wrote"
