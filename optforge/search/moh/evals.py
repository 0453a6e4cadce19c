"""The rule evaluations behind `utility(source, subtask)`: one candidate per distinct source, one
rollout per (candidate, subtask) on exactly that subtask's tasks of the search suite.

A new source is proposed as a candidate (the engine runs its search stages); once it is observed ok,
each subtask asked of it gets a `Rollout` on the subtask's tasks and the first `rollout_seeds` search
seeds, whose row fitness is the answer. A source that failed its stages is answered WORST on every
subtask without a rollout. An answer, once known, is reused: asking again costs no evaluation.
State is plain JSON (`state()` / `from_state`), so a resume continues exactly.
"""

from __future__ import annotations

from typing import Any, Callable

from optforge.search.base import Rollout
from optforge.search.moh.subtasks import WORST, Subtask
from optforge.types import Candidate, EvaluationResult

PROPOSED, OK, FAILED = "proposed", "ok", "failed"


class Evaluations:
    """The book of rule candidates and their subtask fitness. `new_id()` gives candidate ids."""

    def __init__(self, new_id: Callable[[], str], strategy: str = "moh"):
        self.new_id = new_id
        self.strategy = strategy
        self.by_source: dict[str, str] = {}  # source -> candidate id
        self.cands: dict[str, dict[str, Any]] = {}  # id -> {"state", "reason"}
        self.fitness: dict[str, dict[str, float]] = {}  # id -> {subtask: fitness}
        self.waiting: list[list[str]] = []  # [candidate id, subtask] asked and not answered, in order
        self.outbox: list[dict[str, Any]] = []  # proposals not handed out yet (JSON form)

    # -- asking -----------------------------------------------------------------------------------

    def ask(self, source: str, subtask: Subtask, *, note: dict[str, Any], seeds: tuple[int, ...] | None) -> tuple[str, float | None]:
        """(candidate id, fitness) of `source` on `subtask`; fitness None while it is being evaluated
        (the answer then comes from `observe` / `observe_rollout`). `seeds`: the rollout seeds (None
        before the pool is known: only candidates are proposed then)."""
        cid = self.candidate(source, note)
        known = self.answer(cid, subtask.name)
        if known is not None:
            return cid, known
        if [cid, subtask.name] not in self.waiting:
            self.waiting.append([cid, subtask.name])
            if self.cands[cid]["state"] == OK:
                self._rollout(cid, subtask, seeds)
        return cid, None

    def candidate(self, source: str, note: dict[str, Any]) -> str:
        """The candidate id of `source`, proposing it (with `note`) the first time."""
        cid = self.by_source.get(source)
        if cid is None:
            cid = self.new_id()
            self.by_source[source] = cid
            self.cands[cid] = {"state": PROPOSED, "reason": ""}
            self.outbox.append({"type": "candidate", "id": cid, "source": source, "note": dict(note)})
        return cid

    def answer(self, cid: str, subtask: str) -> float | None:
        """The known fitness of candidate `cid` on `subtask` (WORST for a failed candidate), else None."""
        if self.cands.get(cid, {}).get("state") == FAILED:
            return WORST
        return self.fitness.get(cid, {}).get(subtask)

    def source_id(self, source: str) -> str | None:
        return self.by_source.get(source)

    # -- results ----------------------------------------------------------------------------------

    def observe(self, candidate: Candidate, result: EvaluationResult, subtasks: dict[str, Subtask],
                seeds: tuple[int, ...] | None) -> list[tuple[str, str]]:
        """A candidate's search-stage result: rollouts of the subtasks waiting on it (ok), or WORST on
        all of them (failed). Returns the (candidate id, subtask) pairs answered now."""
        info = self.cands.get(candidate.id)
        if info is None or info["state"] != PROPOSED:
            return []
        if result.ok:
            info["state"] = OK
            for cid, name in self.waiting:
                if cid == candidate.id:
                    self._rollout(cid, subtasks[name], seeds)
            return []
        info.update(state=FAILED, reason=str(result.feedback or result.status.value)[:500])
        return self._resolve(candidate.id, None)

    def observe_rollout(self, rollout: Rollout, result: EvaluationResult) -> list[tuple[str, str]]:
        name = str(rollout.note.get("subtask", ""))
        if [rollout.candidate_id, name] not in self.waiting:
            return []
        value = result.fitness if result.ok else WORST
        self.fitness.setdefault(rollout.candidate_id, {})[name] = float(value)
        return self._resolve(rollout.candidate_id, name)

    def _resolve(self, cid: str, subtask: str | None) -> list[tuple[str, str]]:
        done = [(c, s) for c, s in self.waiting if c == cid and (subtask is None or s == subtask)]
        self.waiting = [w for w in self.waiting if (w[0], w[1]) not in done]
        return done

    def _rollout(self, cid: str, subtask: Subtask, seeds: tuple[int, ...] | None) -> None:
        if seeds is None:
            return
        item = {"type": "rollout", "cid": cid, "subtask": subtask.name, "tasks": list(subtask.tasks),
                "seeds": list(seeds)}
        if item not in self.outbox:
            self.outbox.append(item)

    # -- handing out ------------------------------------------------------------------------------

    def take(self, n: int) -> list[Candidate | Rollout]:
        """Up to `n` queued proposals, in the order they were asked."""
        taken, self.outbox = self.outbox[:max(n, 0)], self.outbox[max(n, 0):]
        out: list[Candidate | Rollout] = []
        for item in taken:
            if item["type"] == "candidate":
                out.append(Candidate.new(item["source"], strategy=self.strategy, note=item["note"], id=item["id"]))
            else:
                out.append(Rollout(item["cid"], tasks=tuple(item["tasks"]), seeds=tuple(item["seeds"]),
                                   note={"subtask": item["subtask"]}))
        return out

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"by_source": self.by_source, "cands": self.cands, "fitness": self.fitness,
                "waiting": self.waiting, "outbox": self.outbox}

    def load_state(self, s: dict[str, Any]) -> None:
        self.by_source = dict(s["by_source"])
        self.cands = {k: dict(v) for k, v in s["cands"].items()}
        self.fitness = {k: dict(v) for k, v in s["fitness"].items()}
        self.waiting = [list(w) for w in s["waiting"]]
        self.outbox = [dict(o) for o in s["outbox"]]
