"""POLCA's memory: a bounded priority queue of candidates, each holding every rollout it has had.

A rollout is one (task, seed) evaluation of a candidate: its score (the per-task score of
`optforge.evaluators.scoring`, already clipped to [FLOOR, CEILING]; None when unknown) and the
evaluator's feedback text. Priorities (`AgentOpt/OpenTrace` `priority_search.py`):

- `mean`: the mean of the known scores;
- `ucb`: clip(mean + c * sqrt(ln(iteration + 2) / n) * (CEILING - FLOOR), FLOOR, CEILING), n the
  number of known scores (Hoeffding; the score range is the fitness clip, so the bonus is bounded).

A candidate with no known score has the highest priority, CEILING (the reference pushes its base
agent at the top of the score range; UCB with n = 0 is the same). Ties go to the newer candidate.

Pitfalls of the reference this fixes:
- its size cap slices the heap list (`memory[:size]`), which is not the top-k; here the lowest
  priorities leave, so the queue always holds the true top `max_size`;
- its UCB priority is frozen at push time with that iteration's count; here priorities are computed
  when asked, with the caller's iteration (UCB1 as usually written). Mean priorities are the same
  either way: a queued candidate gets no new rollouts until it is popped;
- the exploit pick ignores how many rollouts a mean rests on; here it needs `min_rollouts`.

Candidates are few (hundreds to thousands), so a sort per pop is cheap and keeps one code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from optforge.types import CEILING, FLOOR

PRIORITIES = ("mean", "ucb")
STATE_VERSION = 1


@dataclass(frozen=True)
class Rollout:
    """One (task, seed) evaluation of a candidate. `score` is None when unknown (skipped by the mean)."""

    task: str
    seed: int
    score: float | None
    feedback: str = ""

    def __post_init__(self) -> None:
        if self.score is not None:
            s = float(self.score)
            if not FLOOR <= s <= CEILING:  # also refuses nan and inf
                raise ValueError(f"rollout score {self.score!r} on task {self.task!r} seed {self.seed} is outside "
                                 f"the score range [{FLOOR}, {CEILING}]; pass the clipped per-task score, or None")
            object.__setattr__(self, "score", s)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "seed": self.seed, "score": self.score, "feedback": self.feedback}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Rollout":
        return cls(str(data["task"]), int(data["seed"]), data["score"], str(data.get("feedback", "")))


@dataclass
class Candidate:
    """A rule in POLCA's memory: its source, lineage, rollouts and (once computed) its embedding.

    `created` orders candidates by age (the memory's counter); a larger value is newer.
    """

    id: str
    source: str
    created: int
    parent: str | None = None
    rollouts: list[Rollout] = field(default_factory=list)
    embedding: list[float] | None = None

    def add_rollouts(self, rollouts: Iterable[Rollout]) -> list[Rollout]:
        """Add rollouts; one the candidate already has for that (task, seed) is not added again (an
        evaluation is deterministic given its seed, so a repeat would only weigh that pair twice).
        Returns the rollouts added."""
        held = {(r.task, r.seed) for r in self.rollouts}
        added = []
        for r in rollouts:
            if (r.task, r.seed) not in held:
                held.add((r.task, r.seed))
                self.rollouts.append(r)
                added.append(r)
        return added

    @property
    def scores(self) -> list[float]:
        """The known scores, in the order they came."""
        return [r.score for r in self.rollouts if r.score is not None]

    @property
    def n(self) -> int:
        """Number of known scores."""
        return len(self.scores)

    @property
    def mean(self) -> float | None:
        """Mean of the known scores; None when there is none."""
        s = self.scores
        return math.fsum(s) / len(s) if s else None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "created": self.created, "parent": self.parent,
                "rollouts": [r.to_json() for r in self.rollouts], "embedding": self.embedding}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Candidate":
        emb = data.get("embedding")
        return cls(str(data["id"]), str(data["source"]), int(data["created"]), data.get("parent"),
                   [Rollout.from_json(r) for r in data.get("rollouts", [])],
                   None if emb is None else [float(x) for x in emb])


def mean_priority(c: Candidate) -> float:
    """The mean score; CEILING when nothing is known yet (explore it first)."""
    m = c.mean
    return CEILING if m is None else m


def ucb_priority(c: Candidate, iteration: int, constant: float) -> float:
    """clip(mean + constant * sqrt(ln(iteration + 2) / n) * (CEILING - FLOOR), FLOOR, CEILING); CEILING for n = 0.

    `iteration` counts finished iterations from 0 (the reference's `n_iters`).
    """
    if iteration < 0:
        raise ValueError(f"iteration={iteration!r} must be >= 0")
    n = c.n
    if n == 0:
        return CEILING
    bonus = constant * math.sqrt(math.log(iteration + 2) / n) * (CEILING - FLOOR)
    return min(CEILING, max(FLOOR, c.mean + bonus))


class Memory:
    """The priority queue. Candidates are added once (`add`, which stamps their age) and then
    popped (`pop_top`) and pushed back (`push`) as the search explores them.

    `priority`: "mean" or "ucb"; `ucb_constant`: c of the ucb bonus; `max_size`: most queued
    candidates (None: no limit); `min_rollouts`: known scores a candidate needs to be `best()`.
    """

    def __init__(self, priority: str = "mean", ucb_constant: float = 1.0, max_size: int | None = None,
                 min_rollouts: int = 0):
        if priority not in PRIORITIES:
            raise ValueError(f"priority={priority!r} must be one of {', '.join(PRIORITIES)}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size={max_size!r} must be >= 1 or None")
        self.priority_name = priority
        self.ucb_constant = float(ucb_constant)
        self.max_size = max_size
        self.min_rollouts = min_rollouts
        self._queued: dict[str, Candidate] = {}
        self._next_created = 0

    # ------------------------------------------------------------------------------ priorities

    def priority(self, c: Candidate, iteration: int) -> float:
        if self.priority_name == "ucb":
            return ucb_priority(c, iteration, self.ucb_constant)
        return mean_priority(c)

    def ranked(self, iteration: int) -> list[Candidate]:
        """The queued candidates, highest priority first (ties: newer first)."""
        return sorted(self._queued.values(), key=lambda c: (self.priority(c, iteration), c.created), reverse=True)

    # ------------------------------------------------------------------------------ the queue

    def __len__(self) -> int:
        return len(self._queued)

    def __contains__(self, candidate_id: str) -> bool:
        return candidate_id in self._queued

    def candidates(self) -> list[Candidate]:
        """The queued candidates in the order they were created."""
        return sorted(self._queued.values(), key=lambda c: c.created)

    def new(self, id: str, source: str, parent: str | None = None) -> Candidate:
        """A new candidate stamped as the newest; not queued until `push`."""
        c = Candidate(id=id, source=source, created=self._next_created, parent=parent)
        self._next_created += 1
        return c

    def push(self, candidate: Candidate, iteration: int = 0) -> list[Candidate]:
        """Queue `candidate` (new, or popped before). Over `max_size`, the lowest-priority candidates
        leave (ties: the older leaves); they are returned, and may include `candidate` itself."""
        if candidate.id in self._queued:
            raise ValueError(f"candidate {candidate.id} is already queued; pop it before pushing it again")
        if candidate.created >= self._next_created:
            raise ValueError(f"candidate {candidate.id} was not made by this memory's new() (created="
                             f"{candidate.created}, next={self._next_created})")
        self._queued[candidate.id] = candidate
        if self.max_size is None or len(self._queued) <= self.max_size:
            return []
        ranked = self.ranked(iteration)
        evicted = ranked[self.max_size:]
        for c in evicted:
            del self._queued[c.id]
        return evicted

    def pop_top(self, k: int, iteration: int) -> list[Candidate]:
        """Remove and return the `k` highest-priority candidates (fewer if fewer are queued)."""
        top = self.ranked(iteration)[:max(k, 0)]
        for c in top:
            del self._queued[c.id]
        return top

    def best(self, extra: Iterable[Candidate] = ()) -> Candidate | None:
        """The exploit pick: the highest mean over queued candidates (and `extra`, e.g. the ones being
        explored) with at least `min_rollouts` known scores; ties: newer. None if none qualifies."""
        pool = {c.id: c for c in [*self._queued.values(), *extra]}
        eligible = [c for c in pool.values() if c.n >= max(self.min_rollouts, 1)]
        if not eligible:
            return None
        return max(eligible, key=lambda c: (c.mean, c.created))

    # ------------------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """JSON-able state: the queued candidates and the age counter (the settings come from the config)."""
        return {"version": STATE_VERSION, "next_created": self._next_created,
                "queued": [c.to_json() for c in self.candidates()]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `state()` returned; the queue then ranks and pops exactly as before."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"POLCA memory state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "this optforge cannot resume it")
        queued = [Candidate.from_json(c) for c in state["queued"]]
        self._queued = {c.id: c for c in queued}
        self._next_created = int(state["next_created"])
