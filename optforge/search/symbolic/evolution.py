"""Regularized evolution over symbolic programs (Real et al. 2019; as used by Chen et al.
2023, arXiv 2302.06675), as an optforge Strategy.

Phases: `restarts` independent searches from the warm start, then `best_restarts` searches from the
best program found so far, each of `phase_evaluations` proposals (None: one endless phase, stopped by
the engine's budget), then the simplification stage (simplify.py). Within a phase: a population of at
most `population` programs; each child is a mutation of the best of `tournament` members drawn at
random; the oldest member leaves when a child arrives (aging).

The fitness cache is keyed by the numeric fingerprint of the live program: a child whose fingerprint
is known (or in flight) costs nothing; the strategy answers it itself and never proposes it again.
Dead statements are removed before a candidate is rendered. Everything, the generator included, is in
`state()`, so a resume in deterministic mode continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from typing import Any, Mapping

import numpy as np

from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.abstract import execute
from optforge.search.symbolic.hashing import live_program, redundancy, symbolic_hash
from optforge.search.symbolic.interpret import fingerprint
from optforge.search.symbolic.mutate import MutationConfig, mutate
from optforge.search.symbolic.params import SymbolicParams
from optforge.search.symbolic.program import Program, pad_slots, render
from optforge.search.symbolic.simplify import Simplifier
from optforge.types import FLOOR, Candidate, EvaluationResult, Status

log = logging.getLogger(__name__)

STATE_VERSION = 1


class SymbolicSearch:
    """The `symbolic` strategy (Strategy protocol: propose / observe / done / state / load_state)."""

    name = "symbolic"

    def __init__(
        self,
        params: SymbolicParams,
        rng: np.random.Generator,
        seed: int = 0,
        warm_programs: list[Program] | None = None,
    ) -> None:
        """`warm_programs` replaces the seeds named in `params.warm_start` (e.g. a user's own program)."""
        self.params = params
        self.rng = rng
        self.seed = seed
        self.mcfg = MutationConfig(
            max_len=params.max_len, const_prob=params.const_prob, max_tries=params.max_tries, hparam_only=params.hparam_only
        )
        progs = warm_programs if warm_programs is not None else [warmstarts.program(n) for n in params.warm_start]
        for prog in progs:
            execute(prog)
        self.warm = [pad_slots(p, params.state_slots) for p in progs]
        self.phase = 0
        self.phase_proposed = 0
        self.init_queue: list[dict[str, Any]] = []  # programs to seed the phase's population with
        self.population: deque[dict[str, Any]] = deque()
        self.pending: dict[str, dict[str, Any]] = {}  # candidate id -> proposal record
        self.pending_fp: dict[str, str] = {}  # fingerprint -> candidate id in flight
        self.waiting: dict[str, list[dict[str, Any]]] = {}  # fingerprint -> duplicate children waiting on it
        self.cache: dict[str, list] = {}  # fingerprint -> [fitness, candidate id, status]
        self.best: dict[str, Any] | None = None  # {"id", "fitness", "program"}
        self.simplifier: Simplifier | None = None
        self.queue: list[Candidate] = []  # proposed (pending) candidates not yet handed out
        self.counter = 0
        self.stats = {
            "proposed": 0,
            "children": 0,  # mutated children generated (cache hits included)
            "cache_hits": 0,
            "dead_statements": 0,
            "statements": 0,
            "mutation_failures": 0,
            "parent_duplicates": 0,  # valid mutations that recomputed the parent's function (free, retried)
            "search_seconds": 0.0,
        }
        self._start_phase()

    # -- phases ------------------------------------------------------------------------------

    def _start_phase(self) -> None:
        self.population.clear()
        self.phase_proposed = 0
        if self.phase < self.params.restarts:
            progs = self.warm
            self.init_queue = [{"program": p.to_json(), "mutation": "warm_start", "parents": []} for p in progs]
        elif self.phase < self.params.phases:
            assert self.best is not None
            best = pad_slots(Program.from_json(self.best["program"]), self.params.state_slots)
            self.init_queue = [{"program": best.to_json(), "mutation": "restart_from_best", "parents": []}]
        else:
            self.init_queue = []

    def _searching(self) -> bool:
        return self.phase < self.params.phases

    def _phase_full(self) -> bool:
        pe = self.params.phase_evaluations
        return pe is not None and self.phase_proposed >= pe

    def _advance(self) -> bool:
        """Move to the next phase when this one is used up; False while a barrier waits for results."""
        nxt = self.phase + 1
        needs_best = nxt >= self.params.restarts  # best restarts and simplification wait for every result
        if needs_best and self.pending:
            return False
        if needs_best and self.best is None:
            self.phase = self.params.phases  # nothing ok to restart from: skip to the end
        else:
            self.phase = nxt
        self._start_phase()
        return True

    # -- proposing ---------------------------------------------------------------------------

    def _new_id(self, fp: str) -> str:
        self.counter += 1
        return hashlib.sha256(f"symbolic:{self.seed}:{self.counter}:{fp}".encode()).hexdigest()[:12]

    def _member(self, program_json: dict, fitness: float, cid: str) -> dict[str, Any]:
        return {"program": program_json, "fitness": float(fitness), "id": cid}

    def _add_member(self, member: dict[str, Any]) -> None:
        self.population.append(member)
        while len(self.population) > self.params.population:
            self.population.popleft()

    def _tournament(self) -> dict[str, Any]:
        pop = list(self.population)
        k = min(self.params.tournament, len(pop))
        picks = self.rng.choice(len(pop), size=k, replace=False)
        best = None
        for i in picks:
            if best is None or pop[int(i)]["fitness"] > best["fitness"]:
                best = pop[int(i)]
        assert best is not None
        return best

    def _offer(self, record: dict[str, Any]) -> Candidate | None:
        """Answer `record` from the cache if possible (None), else make it a candidate."""
        fp = record["fingerprint"]
        if fp in self.cache:
            fit, cid, _status = self.cache[fp]
            if record.get("counts_hit", True):
                self.stats["cache_hits"] += 1
            if record["phase"] == self.phase:
                self._add_member(self._member(record["program"], fit, cid))
            return None
        if fp in self.pending_fp:
            if record.get("counts_hit", True):
                self.stats["cache_hits"] += 1
            self.waiting.setdefault(fp, []).append(record)
            return None
        live = Program.from_json(record["live"])
        cid = self._new_id(fp)
        note = {
            "mutation": record["mutation"],
            "program": record["program"],
            "hash": record["hash"],
            "fingerprint": fp,
            "phase": record["phase"],
        }
        if record["mutation"] == "warm_start":
            note["warm_start"] = True
        if record.get("detail"):
            note["detail"] = record["detail"]
        if record.get("simplifies"):
            note["simplifies"] = record["simplifies"]
            note["tolerance"] = self.params.simplify_tolerance
        cand = Candidate.new(render(live), parents=tuple(record["parents"]), strategy=self.name, note=note, id=cid)
        self.pending[cid] = record
        self.pending_fp[fp] = cid
        self.stats["proposed"] += 1
        return cand

    def _record(self, program: Program, mutation: str, parents: list[str], **extra: Any) -> dict[str, Any]:
        execute(program)
        live = live_program(program)
        return {
            "program": program.to_json(),
            "live": live.to_json(),
            "hash": symbolic_hash(program),
            "fingerprint": fingerprint(live),
            "mutation": mutation,
            "parents": list(parents),
            "phase": self.phase,
            **extra,
        }

    def _next_search(self) -> Candidate | None | bool:
        """One step of the search phase: a candidate, None (answered from the cache), False (must wait)."""
        if self.init_queue:
            item = self.init_queue.pop(0)
            rec = self._record(Program.from_json(item["program"]), item["mutation"], item["parents"], counts_hit=False)
            cand = self._offer(rec)
            if cand is not None:
                self.phase_proposed += 1
            return cand
        if not self.population:
            return False  # the warm start is still being evaluated
        parent = self._tournament()
        child = mutate(Program.from_json(parent["program"]), self.rng, self.mcfg, stats=self.stats)
        if child is None:
            self.stats["mutation_failures"] += 1
            return None
        dead, total = redundancy(child.program)
        self.stats["children"] += 1
        self.stats["dead_statements"] += dead
        self.stats["statements"] += total
        rec = self._record(child.program, child.mutation, [parent["id"]], detail=child.detail)
        cand = self._offer(rec)
        if cand is not None:
            self.phase_proposed += 1
        return cand

    def _simplifying(self) -> bool:
        return self.phase == self.params.phases and self.params.simplify_evaluations > 0

    def _next_simplify(self) -> list[Candidate] | bool:
        """One step of the simplification stage: a round of candidates ([] if answered), False to wait."""
        if self.simplifier is None:
            if self.best is None:
                self.phase += 1  # nothing ok to simplify
                return False
            self.simplifier = Simplifier.start(self.best, self.params.simplify_evaluations,
                                               self.params.simplify_tolerance)
        s = self.simplifier

        def propose(child: Program, index: int) -> Candidate:
            cand = self._offer(self._record(child, "simplify", [s.current_id], simplifies=s.start_id, index=index))
            assert cand is not None  # next_round proposes only fingerprints neither cached nor in flight
            return cand

        return s.next_round(self.cache, self.pending_fp, propose)

    def propose(self, n: int) -> list[Candidate]:
        t0 = time.perf_counter()
        out = self._take(n)
        steps = 0
        limit = 50 * max(n, 1) + 100  # cache hits cost a step each; never spin forever
        while len(out) < n and steps < limit:
            steps += 1
            if self._searching():
                if self._phase_full():
                    if not self._advance():
                        break
                    continue
                got = self._next_search()
                if got is False:
                    break
                if isinstance(got, Candidate):
                    out.append(got)
            elif self._simplifying():
                if self.pending and self.simplifier is None:
                    break  # the best is final only when every search result is in
                batch = self._next_simplify()
                if batch is False:
                    break
                self.queue.extend(batch)  # type: ignore[arg-type]
                out.extend(self._take(n - len(out)))
            else:
                break
        self.stats["search_seconds"] += time.perf_counter() - t0
        return out

    def _take(self, k: int) -> list[Candidate]:
        k = max(k, 0)
        take, self.queue = self.queue[:k], self.queue[k:]
        return take

    # -- observing ---------------------------------------------------------------------------

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        t0 = time.perf_counter()
        try:
            self._observe(candidate, result)
        finally:
            self.stats["search_seconds"] += time.perf_counter() - t0

    def _observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        rec = self.pending.pop(candidate.id, None)
        if rec is None:
            log.debug("symbolic: ignoring a result for unknown candidate %s", candidate.id)
            return
        fp = rec["fingerprint"]
        self.pending_fp.pop(fp, None)
        waiting = self.waiting.pop(fp, [])
        s = self.simplifier
        if result.status is Status.LOST:
            # says nothing about the program: not cached; its waiting duplicates are dropped
            if s is not None and fp in s.round:
                s.round[fp]["fitness"] = FLOOR
            return
        fit = result.fitness
        self.cache[fp] = [fit, candidate.id, result.status.value]
        if result.ok and (self.best is None or fit > self.best["fitness"]):
            self.best = {"id": candidate.id, "fitness": fit, "program": rec["live"]}
            summ = self.summary()
            log.info(
                "symbolic: new best %s fitness %.3f (phase %d, %s); cache hit rate %.0f%%, redundant statements %.0f%%",
                candidate.id, fit, rec["phase"], rec["mutation"], 100 * summ["cache_hit_rate"],
                100 * summ["redundancy_rate"],
            )
        if s is not None and fp in s.round:
            s.round[fp]["fitness"] = fit
        if rec["phase"] == self.phase and self._searching():
            self._add_member(self._member(rec["program"], fit, candidate.id))
            for dup in waiting:
                if dup["phase"] == self.phase:
                    self._add_member(self._member(dup["program"], fit, candidate.id))

    def done(self) -> bool:
        if self._searching() or self.pending or self.queue:
            return False
        if self._simplifying():
            return self.simplifier is not None and self.simplifier.finished
        return True

    # -- reporting ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Cache hit rate, redundancy rate and progress, for logs and the benchmark."""
        st = self.stats
        children = st["children"]
        dups = st.get("parent_duplicates", 0)
        return {
            "phase": self.phase,
            "proposed": st["proposed"],
            "children": children,
            "cache_hits": st["cache_hits"],
            "parent_duplicates": dups,
            # every valid mutation that needed no evaluation, over every valid mutation (the paper's rate)
            "cache_hit_rate": (st["cache_hits"] + dups) / (children + dups) if children + dups else 0.0,
            # only children that differ from their parent but match another known program
            "cache_hit_rate_new_children": st["cache_hits"] / children if children else 0.0,
            "redundancy_rate": st["dead_statements"] / st["statements"] if st["statements"] else 0.0,
            "mutation_failures": st["mutation_failures"],
            "best": dict(self.best) if self.best else None,
            "simplified": list(self.simplifier.accepted) if self.simplifier else [],
            "search_seconds": st["search_seconds"],
        }

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = {
            "version": STATE_VERSION,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "phase": self.phase,
            "phase_proposed": self.phase_proposed,
            "init_queue": list(self.init_queue),
            "population": list(self.population),
            "pending": self.pending,
            "pending_fp": self.pending_fp,
            "waiting": self.waiting,
            "cache": self.cache,
            "best": self.best,
            "simplifier": self.simplifier.to_json() if self.simplifier else None,
            "queue": [c.to_dict() for c in self.queue],
            "counter": self.counter,
            "stats": dict(self.stats),
        }
        # a snapshot, never references to live containers: the engine serialises it in another thread
        snap = json.loads(json.dumps(out))
        self.stats["search_seconds"] += time.perf_counter() - t0
        return snap

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"symbolic strategy state version {state.get('version')!r} is not {STATE_VERSION}")
        self.seed = int(state["seed"])
        bg = getattr(np.random, state["rng"]["bit_generator"])()
        bg.state = state["rng"]
        self.rng = np.random.Generator(bg)
        self.phase = int(state["phase"])
        self.phase_proposed = int(state["phase_proposed"])
        self.init_queue = [dict(x) for x in state["init_queue"]]
        self.population = deque(dict(m) for m in state["population"])
        self.pending = {k: dict(v) for k, v in state["pending"].items()}
        self.pending_fp = dict(state["pending_fp"])
        self.waiting = {k: [dict(r) for r in v] for k, v in state["waiting"].items()}
        self.cache = {k: list(v) for k, v in state["cache"].items()}
        self.best = dict(state["best"]) if state["best"] else None
        self.simplifier = Simplifier.from_json(state["simplifier"]) if state["simplifier"] else None
        self.queue = [Candidate.from_dict(c) for c in state["queue"]]
        self.counter = int(state["counter"])
        self.stats = dict(state["stats"])
