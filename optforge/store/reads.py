"""The store's read methods (mixed into `Store`): candidates, evaluation rows and their aggregates,
rollouts, strategy records, funnel decisions, LLM calls, events."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from typing import Any, Collection

from optforge.store.rows import (
    Aggregate, EvaluationRecord, Promotion, Ranked, RequestKey, RolloutRecord, StrategyRecord, candidate_from,
    evaluation_from, rollout_from,
)
from optforge.types import Candidate, Status


class Reads:
    _db: sqlite3.Connection
    _lock: threading.RLock
    run_dir: Any

    def _rows(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def config(self) -> dict[str, Any]:
        """The resolved config of the run (a `RunConfig.to_dict()` mapping)."""
        return self.meta("config", {})

    def schema_version(self) -> int:
        return int(self.meta("schema_version", 1))

    def strategy_state(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT state FROM strategy_state WHERE key = 'strategy'")
        return json.loads(rows[0]["state"]) if rows else None

    def proposal_count(self) -> int:
        """Stored candidates, funnel references included (the next `seq`)."""
        return int(self._rows("SELECT COUNT(*) FROM candidates")[0][0])

    def strategy_proposal_count(self) -> int:
        """The strategy's proposals so far: its candidates and its rollouts (the next `pseq`)."""
        return int(self._rows("SELECT (SELECT COUNT(*) FROM candidates WHERE pseq IS NOT NULL)"
                              " + (SELECT COUNT(*) FROM rollouts)")[0][0])

    def candidates(self, *, include_reference: bool = True) -> list[Candidate]:
        """All candidates in storing order (funnel reference seeds have note['role'] == 'reference')."""
        cands = [candidate_from(r) for r in self._rows("SELECT * FROM candidates ORDER BY seq")]
        return cands if include_reference else [c for c in cands if c.note.get("role") != "reference"]

    def candidate(self, candidate_id: str) -> Candidate:
        """One candidate by id, or by a unique id prefix (raises KeyError naming the id)."""
        rows = self._rows("SELECT * FROM candidates WHERE id = ? OR id LIKE ? ORDER BY seq",
                          (candidate_id, candidate_id.replace("%", "") + "%"))
        exact = [r for r in rows if r["id"] == candidate_id]
        if exact or len(rows) == 1:
            return candidate_from((exact or rows)[0])
        raise KeyError(f"no candidate '{candidate_id}' in {self.run_dir}" if not rows
                       else f"candidate id prefix '{candidate_id}' is ambiguous ({len(rows)} matches)")

    def seq_of(self, candidate_id: str) -> int:
        rows = self._rows("SELECT seq FROM candidates WHERE id = ?", (candidate_id,))
        if not rows:
            raise KeyError(candidate_id)
        return int(rows[0]["seq"])

    def observed_ids(self) -> set[str]:
        return {r["id"] for r in self._rows("SELECT id FROM candidates WHERE observed = 1")}

    def proposals(self) -> list[Candidate | RolloutRecord]:
        """The strategy's proposals in the order it made them: its candidates and its rollouts."""
        cands = [(r["pseq"], candidate_from(r)) for r in self._rows("SELECT * FROM candidates WHERE pseq IS NOT NULL")]
        rolls = [(r["pseq"], rollout_from(r)) for r in self._rows("SELECT * FROM rollouts")]
        return [p for _, p in sorted(cands + rolls, key=lambda x: x[0])]

    def rollouts(self, candidate_id: str | None = None, *, refused: bool = False) -> list[RolloutRecord]:
        """The strategy's rollouts in proposal order, of one candidate when given; those the engine
        refused (never evaluated) only with `refused=True`."""
        sql, args = "SELECT * FROM rollouts WHERE 1=1", []
        if candidate_id is not None:
            sql, args = sql + " AND candidate_id = ?", [candidate_id]
        if not refused:
            sql += " AND refused IS NULL"
        return [rollout_from(r) for r in self._rows(sql + " ORDER BY pseq", args)]

    def evaluations(self, candidate_id: str | None = None, stage: str | None = None, *,
                    rollout_id: int | None = None) -> list[EvaluationRecord]:
        """Stored evaluation rows, oldest first, optionally of one candidate, stage and/or rollout."""
        sql, args = "SELECT * FROM evaluations WHERE 1=1", []
        for column, value in (("candidate_id", candidate_id), ("stage", stage), ("rollout_id", rollout_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return [evaluation_from(r) for r in self._rows(sql + " ORDER BY id", args)]

    def evaluation(self, candidate_id: str, stage: str) -> EvaluationRecord | None:
        """The stage evaluation of a candidate (not a rollout): its latest row, a retried `lost` replaced."""
        rows = self._rows("SELECT * FROM evaluations WHERE candidate_id = ? AND stage = ? AND rollout_id IS NULL"
                          " ORDER BY (status = ?) , id DESC LIMIT 1", (candidate_id, stage, Status.LOST.value))
        return evaluation_from(rows[0]) if rows else None

    def evaluation_count(self, *, include_reference: bool = False, stages: Collection[str] | None = None) -> int:
        """Stored evaluation rows (references excluded unless asked), of `stages` when given
        (budget.max_evaluations counts the strategy's rows at the search stages)."""
        sql, args = "SELECT COUNT(*) FROM evaluations WHERE 1=1", []
        if not include_reference:
            sql += " AND candidate_id IN (SELECT id FROM candidates WHERE pseq IS NOT NULL)"
        if stages is not None:
            sql += f" AND stage IN ({', '.join('?' for _ in stages)})"
            args += list(stages)
        return int(self._rows(sql, args)[0][0])

    def train_cpu_seconds(self, *, stages: Collection[str] | None = None) -> float:
        """CPU seconds of the strategy's evaluations, of `stages` when given (metrics.cpu_seconds of rows
        not lent from an identical request; rows without it count 0)."""
        sql, args = ("SELECT metrics FROM evaluations WHERE cached_from IS NULL AND candidate_id IN"
                     " (SELECT id FROM candidates WHERE pseq IS NOT NULL)"), []
        if stages is not None:
            sql += f" AND stage IN ({', '.join('?' for _ in stages)})"
            args += list(stages)
        total = 0.0
        for r in self._rows(sql, args):
            value = json.loads(r["metrics"]).get("cpu_seconds")
            total += float(value) if isinstance(value, (int, float)) else 0.0
        return total

    def cached(self, key: RequestKey) -> EvaluationRecord | None:
        """An earlier non-`lost` result of the identical request, or None. A column a version-1 row left
        unknown (NULL: detail, tune_wd, reuse_lr, score_version) matches no request, since every request
        names them; such a row still answers its own candidate's resume (`evaluation`)."""
        sql = ("SELECT * FROM evaluations WHERE content_hash = ? AND stage = ? AND suite = ? AND suite_version = ?"
               " AND seeds_spec = ? AND tasks IS ? AND detail = ? AND status != ?"
               " AND tune_wd = ? AND reuse_lr = ? AND score_version = ? ORDER BY id LIMIT 1")
        tasks = None if key.tasks is None else json.dumps(list(key.tasks), sort_keys=True)
        rows = self._rows(sql, (key.content_hash, key.stage, key.suite, key.suite_version, key.seeds_spec, tasks,
                                key.detail, Status.LOST.value, int(key.tune_wd), int(key.reuse_lr), key.score_version))
        return evaluation_from(rows[0]) if rows else None

    def aggregate(self, candidate_id: str, stage: str) -> Aggregate | None:
        """Mean, sd, n and per-task breakdown of all of a candidate's rows at `stage` (see `Aggregate`)."""
        return Aggregate.of(self.evaluations(candidate_id, stage))

    def leaderboard(self, stage: str = "train", *, limit: int | None = None,
                    include_reference: bool = False) -> list[Ranked]:
        """Candidates ranked by their aggregate (task-balanced) mean fitness at `stage` over all rows:
        those whose rows cover the stage's full task list first, then those scored on part of it
        (only rollouts on task subsets; `Aggregate.missing` names the rest), failures last within
        each; ties by proposal order. The full task list is the union of the tasks of the stage's ok
        full-suite rows. Each entry's evaluation is the stage evaluation with `aggregate` attached."""
        cands = {c.id: (i, c) for i, c in enumerate(self.candidates())}
        rows: dict[str, list[EvaluationRecord]] = {}
        suite_tasks: dict[str, None] = {}
        for e in self.evaluations(stage=stage):
            if e.candidate_id in cands:
                rows.setdefault(e.candidate_id, []).append(e)
                if e.ok and e.tasks is None:
                    suite_tasks.update(dict.fromkeys(e.metrics.get("tasks") or {}))
        out = []
        for cid, evs in rows.items():
            agg = Aggregate.of(evs, suite_tasks)
            head = self.evaluation(cid, stage) or evs[0]
            out.append(Ranked(cands[cid][1], dataclasses.replace(head, aggregate=agg)))
        out.sort(key=lambda r: (bool(r.evaluation.aggregate and r.evaluation.aggregate.missing),
                                -(r.evaluation.aggregate.mean if r.evaluation.aggregate else r.evaluation.fitness),
                                cands[r.candidate.id][0]))
        if not include_reference:
            out = [x for x in out if x.candidate.note.get("role") != "reference"]
        return out[:limit] if limit is not None else out

    def best(self, stage: str = "train") -> Ranked | None:
        """The best `ok` candidate at `stage`, or None when none is ok."""
        top = [r for r in self.leaderboard(stage) if r.evaluation.ok]
        return top[0] if top else None

    def records(self, kind: str | None = None) -> list[StrategyRecord]:
        """The strategy's records in the order kept, optionally of one kind."""
        sql, args = "SELECT * FROM strategy_records", []
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", [kind]
        return [StrategyRecord(r["kind"], json.loads(r["data"]), r["candidate_id"], r["created"], r["id"])
                for r in self._rows(sql + " ORDER BY id", args)]

    def promotions(self, stage: str | None = None) -> list[Promotion]:
        sql, args = "SELECT * FROM promotions", []
        if stage is not None:
            sql, args = sql + " WHERE stage = ?", [stage]
        return [Promotion(r["candidate_id"], r["stage"], bool(r["passed"]), r["value"], r["bar"], r["noise"],
                          json.loads(r["detail"]), r["created"]) for r in self._rows(sql + " ORDER BY created", args)]

    def llm_calls(self) -> list[dict[str, Any]]:
        """Every LLM call in order, its `extra` fields merged in (a column wins over a NULL-free extra)."""
        out = []
        for r in self._rows("SELECT * FROM llm_calls ORDER BY id"):
            d = json.loads(r["extra"] or "{}")
            d.update({k: r[k] for k in r.keys() if k != "extra" and (r[k] is not None or k not in d)})
            out.append(d)
        return out

    def llm_spend(self) -> tuple[float, int]:
        """(dollars, HTTP requests) recorded so far; requests count retries, as budget.max_llm_calls does.
        Rows written before the `attempts` column keep the count in `extra`."""
        row = self._rows("SELECT COALESCE(SUM(dollars), 0), COALESCE(SUM(MAX(COALESCE(attempts,"
                         " json_extract(extra, '$.attempts'), 1), 1)), 0) FROM llm_calls")[0]
        return float(row[0]), int(row[1])

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM events", []
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", [kind]
        return [{"created": r["created"], "kind": r["kind"], **json.loads(r["data"])}
                for r in self._rows(sql + " ORDER BY id", args)]

    def status_counts(self, stage: str | None = None) -> dict[str, int]:
        sql, args = "SELECT status, COUNT(*) AS n FROM evaluations", []
        if stage is not None:
            sql, args = sql + " WHERE stage = ?", [stage]
        return {r["status"]: int(r["n"]) for r in self._rows(sql + " GROUP BY status", args)}
