"""The evolve population: programs, island membership, parent sampling, inspirations, migration.

Parent sampling follows ShinkaEvolve's weighted scheme: within an island, each evaluated program
gets sigmoid(lambda * (fitness - island median)) times an offspring bonus 1 / (1 + children), times a
code-novelty bonus (1 + w * (1 - max Jaccard similarity to the island's other programs)).
Every number needed to resume lives in `Program` records and island lists (JSON-able).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from optforge.search.evolve.dedup import jaccard, tokens
from optforge.types import FLOOR


@dataclass
class Program:
    """One candidate as the strategy tracks it."""

    id: str
    source: str
    parent: str | None = None
    island: int = 0  # home island (seeds: 0, and members of every island)
    status: str = "pending"  # pending | ok | a failure status | invalid
    fitness: float | None = None  # fitness_stage fitness once known (FLOOR for failures)
    scores: dict[str, float] = field(default_factory=dict)  # per-task scores
    result: dict[str, Any] = field(default_factory=dict)  # compact result summary for prompts
    feedback: str = ""
    children: int = 0
    seed: str | None = None  # seed name for warm starts
    model: str = ""
    dollars: float = 0.0
    edit: str = ""
    norm_hash: str = ""
    stages: list[str] = field(default_factory=list)
    credited: bool = False  # the bandit has been updated for this program

    @property
    def evaluated_ok(self) -> bool:
        return self.status == "ok" and self.fitness is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Program":
        """Keys this version does not know (`twin_of` of states written before it was removed) are dropped."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Population:
    def __init__(self, n_islands: int):
        self.programs: dict[str, Program] = {}
        self.islands: list[list[str]] = [[] for _ in range(n_islands)]

    # -- membership -------------------------------------------------------------------------------

    def add(self, prog: Program, islands: list[int] | None = None) -> None:
        self.programs[prog.id] = prog
        for i in (islands if islands is not None else [prog.island]):
            if prog.id not in self.islands[i]:
                self.islands[i].append(prog.id)

    def members(self, island: int) -> list[Program]:
        return [self.programs[pid] for pid in self.islands[island] if pid in self.programs]

    def ranked(self, island: int | None = None) -> list[Program]:
        """Evaluated-ok programs, best first; ties by insertion order."""
        pool = self.members(island) if island is not None else list(self.programs.values())
        ok = [p for p in pool if p.evaluated_ok]
        return sorted(ok, key=lambda p: -float(p.fitness))

    def pending(self) -> int:
        return sum(1 for p in self.programs.values() if p.status == "pending")

    # -- sampling ---------------------------------------------------------------------------------

    def sample_parent(self, island: int, rng: np.random.Generator, sharpness: float, novelty_weight: float) -> Program | None:
        """Weighted parent sampling on `island`; falls back to all islands, then to the best failure
        ("fix mode") when no program has succeeded yet and nothing is pending."""
        pool = self.ranked(island) or self.ranked()
        if not pool:
            return None
        fit = np.array([float(p.fitness) for p in pool])
        med = float(np.median(fit))
        spread = float(np.std(fit)) or 1.0
        z = np.clip(sharpness * (fit - med) / spread, -50, 50)
        w = 1.0 / (1.0 + np.exp(-z))
        w = w / np.array([1.0 + p.children for p in pool])
        if novelty_weight > 0 and len(pool) > 1:
            toks = [tokens(p.source) for p in pool]
            nov = np.array([1.0 - max(jaccard(toks[i], toks[j]) for j in range(len(pool)) if j != i)
                            for i in range(len(pool))])
            w = w * (1.0 + novelty_weight * nov)
        w = w / w.sum()
        return pool[int(rng.choice(len(pool), p=w))]

    def inspirations(self, island: int, parent: Program, rng: np.random.Generator, top: int, diverse: int) -> list[Program]:
        """The island's best programs other than the parent, then random others for diversity."""
        chosen = [p for p in self.ranked(island) if p.id != parent.id][:top]
        taken = {parent.id} | {p.id for p in chosen}
        rest = [p for p in self.ranked() if p.id not in taken]
        if diverse and rest:
            idx = rng.choice(len(rest), size=min(diverse, len(rest)), replace=False)
            chosen += [rest[int(i)] for i in sorted(idx)]
        return chosen

    def migrate(self, size: int) -> list[tuple[str, int, int]]:
        """Copy the `size` best programs of each island to the next island (ring). Returns moves."""
        moves = []
        n = len(self.islands)
        if n < 2 or size <= 0:
            return moves
        best = [[p.id for p in self.ranked(i)[:size]] for i in range(n)]
        for i in range(n):
            dst = (i + 1) % n
            for pid in best[i]:
                if pid not in self.islands[dst]:
                    self.islands[dst].append(pid)
                    moves.append((pid, i, dst))
        return moves

    # -- references -------------------------------------------------------------------------------

    def lagging_tasks(self, parent: Program, k: int = 3) -> list[str]:
        """Tasks where the parent does worst (negative scores first), at most k."""
        if not parent.scores:
            return []
        order = sorted(parent.scores, key=lambda t: parent.scores[t])
        lag = [t for t in order if parent.scores[t] < 0.0]
        return (lag or order)[:k]

    def references(self, parent: Program, refs: dict[str, dict[str, float]], k: int) -> list[tuple[str, float, list[str]]]:
        """Seeds that beat the parent on its lagging tasks: (seed name, total gain, tasks), best first."""
        lag = self.lagging_tasks(parent)
        out = []
        for name, scores in refs.items():
            if name == parent.seed:
                continue
            tasks = [t for t in lag if t in scores and scores[t] > parent.scores.get(t, FLOOR)]
            gain = sum(scores[t] - parent.scores.get(t, FLOOR) for t in tasks)
            if tasks and gain > 0:
                out.append((name, gain, tasks))
        out.sort(key=lambda x: (-x[1], x[0]))
        return out[:k]

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"programs": [p.to_dict() for p in self.programs.values()], "islands": [list(i) for i in self.islands]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Population":
        pop = cls(len(state["islands"]))
        for d in state["programs"]:
            prog = Program.from_dict(d)
            pop.programs[prog.id] = prog
        pop.islands = [list(i) for i in state["islands"]]
        return pop

