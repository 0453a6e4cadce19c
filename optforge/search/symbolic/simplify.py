"""The budgeted post-search simplification (the second of the three
simplification steps of Chen et al. 2023, arXiv 2302.06675: drop the live statements whose removal
changes the result least; the first, dead code removal, happens for free; the third is manual).

Dead statements are removed for free (hashing.live_program). Then, round by round, every child with
one live statement removed (valid and functionally new) is evaluated; the child whose fitness drops
least is kept if it stays within `tolerance` of the program the stage started from, and the next
round starts from it. Evaluations already in the fitness cache cost nothing. Each kept child is a
candidate with its own evaluations, noted ``{"mutation": "simplify", "simplifies": <start id>}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from optforge.types import Candidate

from optforge.search.symbolic.abstract import is_valid
from optforge.search.symbolic.hashing import live_program
from optforge.search.symbolic.interpret import fingerprint
from optforge.search.symbolic.program import Arg, Program, Stmt


def _bypass(program: Program, i: int, repl: Arg) -> Program | None:
    """Remove statement i and let later reads of its target read `repl` (one of its arguments) instead,
    until the target or `repl` is assigned again."""
    x = program.body[i].target
    body = list(program.body[:i])
    active = True
    for st in program.body[i + 1 :]:
        if active:
            st = Stmt(st.target, st.fn, tuple(repl if a == x else a for a in st.args))
            if st.target in (x, repl):
                active = False
        body.append(st)
    ret = program.ret
    if active and ret == x:
        if not isinstance(repl, str):
            return None
        ret = repl
    return program.replace(body=tuple(body), ret=ret)


def removals(program: Program) -> list[tuple[int, Program]]:
    """Children with one statement fewer: the plain removal (a reassigned variable keeps its previous
    value), and for temporaries a bypass through each argument (``x = f(a, b)`` gone, x read as a or b)."""
    out = []
    for i, st in enumerate(program.body):
        out.append((i, program.replace(body=program.body[:i] + program.body[i + 1 :])))
        if st.target in program.slots:
            continue
        for repl in dict.fromkeys(st.args):
            child = _bypass(program, i, repl)
            if child is not None:
                out.append((i, child))
    return out


@dataclass
class Simplifier:
    """State machine of the simplification stage; JSON state via `to_json` / `from_json`."""

    start_id: str
    start_fitness: float
    current: Program
    current_id: str
    current_fitness: float
    budget: int
    tolerance: float
    spent: int = 0
    finished: bool = False
    # the round in flight: fingerprint -> {"program", "index", "fitness" (None until known), "id"}
    round: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)  # ids of kept children, in order

    @classmethod
    def start(cls, best: Mapping[str, Any], budget: int, tolerance: float) -> "Simplifier":
        """Simplify the live part of `best` ({"id", "fitness", "program" as JSON}) with `budget` evaluations."""
        return cls(start_id=best["id"], start_fitness=best["fitness"],
                   current=live_program(Program.from_json(best["program"])), current_id=best["id"],
                   current_fitness=best["fitness"], budget=budget, tolerance=tolerance)

    def next_round(self, cache: Mapping[str, list], pending_fp: Mapping[str, str],
                   propose: Callable[[Program, int], Candidate]) -> list[Candidate] | bool:
        """One step of the stage: False to wait (or when finished), [] after closing a round, else the
        candidates of a new round. `cache` maps fingerprint -> [fitness, id, status], `pending_fp`
        fingerprint -> id in flight; `propose(child, removed_index)` makes a candidate of a child that is
        neither."""
        if self.finished:
            return False
        if self.round:
            if not self.round_done():
                return False
            self.finish_round()
            return []
        if self.spent >= self.budget:
            self.finished = True
            return False
        batch: list[Candidate] = []
        for index, child, fp in self.children():
            entry: dict[str, Any] = {"program": child.to_json(), "index": index, "fitness": None, "id": None}
            if fp in cache:
                entry["fitness"], entry["id"] = cache[fp][0], cache[fp][1]
            elif fp in pending_fp:
                entry["id"] = pending_fp[fp]
            elif self.spent < self.budget:
                cand = propose(child, index)
                entry["id"] = cand.id
                self.spent += 1
                batch.append(cand)
            else:
                continue
            self.round[fp] = entry
        if not self.round:
            self.finished = True
            return False
        return batch

    def children(self) -> list[tuple[int, Program, str]]:
        """(removed index, child, fingerprint) for every single-statement removal worth evaluating."""
        out = []
        seen = {fingerprint(self.current)}
        for i, child in removals(self.current):
            child = live_program(child)
            if not is_valid(child):
                continue
            fp = fingerprint(child)
            if fp in seen:
                continue
            seen.add(fp)
            out.append((i, child, fp))
        return out

    def round_done(self) -> bool:
        return all(c["fitness"] is not None for c in self.round.values())

    def finish_round(self) -> None:
        """Keep the best child of the finished round if it is within tolerance, else stop."""
        best = None
        for fp, c in self.round.items():
            if best is None or c["fitness"] > best[1]["fitness"]:
                best = (fp, c)
        self.round = {}
        if best is None or best[1]["fitness"] < self.start_fitness - self.tolerance or not best[1].get("id"):
            self.finished = True
            return
        c = best[1]
        self.current = Program.from_json(c["program"])
        self.current_id = c["id"]
        self.current_fitness = float(c["fitness"])
        self.accepted.append(c["id"])
        if not self.current.body or self.spent >= self.budget:
            self.finished = True

    def to_json(self) -> dict[str, Any]:
        return {
            "start_id": self.start_id,
            "start_fitness": self.start_fitness,
            "current": self.current.to_json(),
            "current_id": self.current_id,
            "current_fitness": self.current_fitness,
            "budget": self.budget,
            "tolerance": self.tolerance,
            "spent": self.spent,
            "finished": self.finished,
            "round": self.round,
            "accepted": list(self.accepted),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Simplifier":
        return cls(
            start_id=d["start_id"],
            start_fitness=float(d["start_fitness"]),
            current=Program.from_json(d["current"]),
            current_id=d["current_id"],
            current_fitness=float(d["current_fitness"]),
            budget=int(d["budget"]),
            tolerance=float(d["tolerance"]),
            spent=int(d["spent"]),
            finished=bool(d["finished"]),
            round={k: dict(v) for k, v in d["round"].items()},
            accepted=list(d["accepted"]),
        )
