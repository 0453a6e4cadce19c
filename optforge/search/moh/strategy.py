"""The MoH strategy: the phases and the two levels of a search by LLM-written procedures (the calls
the procedures make are served by `broker.CallBroker`, its mixin).

Phases (Shi et al., ICLR 2026, arXiv 2505.20881, `moh.py`):

1. **seed rules**: each `seed_rules` rule is proposed (warm start); once the first is observed the
   subtasks are resolved on the search suite (`subtasks.resolve_subtasks`), and each seed rule is
   evaluated on each subtask: the subtask populations start from them.
2. **seed procedures**: each seed procedure (`seed_procedures`, then `meta_procedure`) is scored:
   its meta-utility.
3. **iterations** (`n_iterations`): the meta-optimizer (first `meta_procedure`) runs on the procedure
   population with task `procedures` (self-invocation); each `utility(procedure_source, task)` it
   makes is a meta-utility. The best procedure scored in the iteration becomes the next round's
   meta-optimizer if it beats the incumbent's meta-utility.

The meta-utility of a procedure: the broker starts it in its own sandbox run on each subtask in
turn (sandboxes never nest: a meta run waits while the broker runs the procedure it asked about),
and takes the weighted mean of the best fitness each run reached (`subtasks.meta_utility`). A run
that fails (a limit, an exception, no result) gives the procedure WORST, with the reason.

Only one procedure run is active at a time, so the proposals (and the run, in deterministic mode)
do not depend on timing. While a run computes or waits, `propose` returns nothing and `busy()` is
True. `state()` keeps the runs on the stack with their answer logs: a resumed run restarts from its
start with the same seed, and its calls are answered from the log, in order, until it passes the
point where it stopped (`runs`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from optforge import seeds as seedlib
from optforge.search.base import SEARCH_STAGES, Rollout, StrategyBase
from optforge.search.moh import prompt
from optforge.search.moh.broker import CallBroker
from optforge.search.moh.evals import Evaluations
from optforge.search.moh.params import MohConfig
from optforge.search.moh.procedures import idea_of, load_procedure
from optforge.search.moh.runs import INNER, META, RunSpec
from optforge.search.moh.subtasks import WORST, Subtask, meta_utility, resolve_subtasks
from optforge.types import Candidate, EvaluationResult

log = logging.getLogger(__name__)

STATE_VERSION = 1
POLL_S = 0.5
"""How long one `propose` waits for the active run's next call before it returns nothing (busy)."""


class MohStrategy(CallBroker, StrategyBase):
    name = "moh"

    def __init__(self, config: MohConfig, llm: Any, rng: np.random.Generator, sandbox: Any,
                 record: Callable[..., None]):
        """`sandbox`: an `optforge.sandbox.procedure.ProcedureSandbox` (check, start); `record(kind, data,
        candidate_id=None)` keeps a strategy record."""
        self.config = config
        self.llm = llm
        self.rng = rng
        self.sandbox = sandbox
        self.record = record
        self.evals = Evaluations(self._new_id, self.name)
        self.phase = "start"
        self.subtasks: tuple[Subtask, ...] = ()
        self.seeds: tuple[int, ...] | None = None  # rollout seeds, once the search suite is known
        self.rules: dict[str, list[dict[str, Any]]] = {}  # subtask -> [{source, idea, fitness, candidate}], best first
        self.procedures: list[dict[str, Any]] = []  # every procedure scored or being scored, in order
        self.to_score: list[str] = []  # procedure ids waiting for their meta-utility (seed phase)
        self.scoring: dict[str, Any] | None = None  # {"procedure", "index", "best": {subtask: f}, "runs": [...]}
        self.stack: list[RunSpec] = []  # the meta run (if any), then the inner run (if any)
        self.handles: dict[str, Any] = {}  # run id -> ProcedureRun (not state: restarted on resume)
        self.calls: dict[str, Any] = {}  # run id -> the ProcedureCall out now
        self.replayed: dict[str, int] = {}  # run id -> calls answered from its log since its (re)start
        self.meta_optimizer = ""  # the procedure id of the current meta-optimizer
        self.iteration = 0
        self.iteration_start = 0  # index into procedures where this iteration's new ones begin
        self.stop_reason: str | None = None
        self.n_runs = 0

    # -- protocol ---------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate | Rollout]:
        self._drive()
        return self.evals.take(n)

    def busy(self) -> bool:
        return not self.done()

    def done(self) -> bool:
        return self.phase == "done" and not self.evals.outbox

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        if result.stage and result.stage not in SEARCH_STAGES:
            return
        first = self.phase == "seeding" and not self.subtasks and result.ok
        if first:
            self._resolve_suite(result)
        answered = self.evals.observe(candidate, result, self._by_name(), self.seeds)
        if self.phase == "seeding" and not self.subtasks and self._seeds_failed():
            self._stop("no seed rule was evaluated ok: nothing to search from")
        self._answered(answered)

    def observe_rollout(self, rollout: Rollout, result: EvaluationResult) -> None:
        self._answered(self.evals.observe_rollout(rollout, result))

    def best(self) -> dict[str, Any] | None:
        """The procedure with the highest meta-utility (None before any is scored)."""
        scored = [p for p in self.procedures if p.get("utility") is not None]
        return max(scored, key=lambda p: p["utility"]) if scored else None

    def close(self) -> None:
        """Kill the procedure runs still going (a budget ended the search while they waited)."""
        self.kill_all(self.handles)

    @staticmethod
    def kill_all(handles: dict[str, Any]) -> None:
        """Kill the runs of `handles` (run id -> ProcedureRun) and forget them; also at exit."""
        for run_id, handle in list(handles.items()):
            try:
                handle.kill("the search ended")
            except Exception:  # noqa: BLE001 - best effort at shutdown
                log.debug("moh: killing run %s failed", run_id, exc_info=True)
        handles.clear()

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        best = self.best()
        return {"version": STATE_VERSION, "phase": self.phase, "rng": self.rng.bit_generator.state,
                "evals": self.evals.state(),
                "subtasks": [[s.name, list(s.tasks), s.weight] for s in self.subtasks],
                "seeds": None if self.seeds is None else list(self.seeds), "rules": self.rules,
                "procedures": self.procedures, "to_score": self.to_score, "scoring": self.scoring,
                "stack": [r.to_state() for r in self.stack], "meta_optimizer": self.meta_optimizer,
                "iteration": self.iteration, "iteration_start": self.iteration_start,
                "stop_reason": self.stop_reason, "n_runs": self.n_runs,
                "best": None if best is None else {k: best[k] for k in ("id", "utility", "idea")},
                "llm": self.llm.state() if hasattr(self.llm, "state") else {}}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"moh state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "this run was written by another optforge version")
        self.close()
        self.phase = state["phase"]
        self.rng.bit_generator.state = state["rng"]
        self.evals.load_state(state["evals"])
        self.subtasks = tuple(Subtask(n, tuple(t), float(w)) for n, t, w in state["subtasks"])
        self.seeds = None if state["seeds"] is None else tuple(int(s) for s in state["seeds"])
        self.rules = {k: [dict(e) for e in v] for k, v in state["rules"].items()}
        self.procedures = [dict(p) for p in state["procedures"]]
        self.to_score = list(state["to_score"])
        self.scoring = state["scoring"]
        self.stack = [RunSpec.from_state(r) for r in state["stack"]]
        self.meta_optimizer = state["meta_optimizer"]
        self.iteration, self.iteration_start = int(state["iteration"]), int(state["iteration_start"])
        self.stop_reason, self.n_runs = state["stop_reason"], int(state["n_runs"])
        self.calls, self.replayed = {}, {}
        if state.get("llm") and hasattr(self.llm, "load_state"):
            self.llm.load_state(state["llm"])

    # -- the phases -------------------------------------------------------------------------------

    def _drive(self) -> None:
        """Advance until something waits on the engine, the active run is busy computing, or the end."""
        while self.phase != "done":
            if self.phase == "start":
                self._propose_seed_rules()
                return
            if self.phase == "seeding":
                if self.evals.waiting or not self.subtasks:
                    return
                self._seeded()
                continue
            if not self.stack:
                self._next_job()
                continue
            self._restart_stack()
            if not self.stack:
                continue
            top = self.stack[-1]
            if top.pending is not None:
                return  # waits on an evaluation (or on the inner run above it: then it is not the top)
            event = self.handles[top.run_id].poll(POLL_S)
            if event is None:
                return
            self._on_event(top, event)

    def _propose_seed_rules(self) -> None:
        for name in self.config.seed_rules:  # asked on the subtasks once the first result names the suite
            self.evals.candidate(seedlib.source(name), {"kind": "seed", "seed": name, "warm_start": True})
        self.phase = "seeding"

    def _resolve_suite(self, result: EvaluationResult) -> None:
        """The subtasks and rollout seeds from the first ok result (its tasks are the search suite's);
        then every seed rule is asked on every subtask."""
        from optforge.evaluators.tasks import get_suite

        cfg = self.config
        names = list(result.metrics.get("tasks") or ()) or [t.name for t in get_suite(result.suite).tasks]
        self.subtasks = resolve_subtasks(names, lambda: get_suite(result.suite).tasks, cfg.subtasks, cfg.group_by,
                                         cfg.weights)
        pool = cfg.search_seeds or tuple(getattr(get_suite(result.suite), "search_seeds", ()) or ())
        if len(pool) < cfg.rollout_seeds:
            raise ValueError(f"moh: suite '{result.suite}' has {len(pool)} search seeds (Suite.search_seeds), and each "
                             f"subtask evaluation needs rollout_seeds={cfg.rollout_seeds}; set strategy.search_seeds, "
                             "or search a suite with a search-seed pool")
        self.seeds = tuple(pool[:cfg.rollout_seeds])
        self.record("subtasks", {"subtasks": {s.name: {"tasks": list(s.tasks), "weight": s.weight}
                                              for s in self.subtasks}, "seeds": list(self.seeds)})
        for name in cfg.seed_rules:
            for s in self.subtasks:
                self.evals.ask(seedlib.source(name), s, seeds=self.seeds, note={})

    def _seeds_failed(self) -> bool:
        return all(c["state"] == "failed" for c in self.evals.cands.values())

    def _seeded(self) -> None:
        """Every seed rule is measured on every subtask: the populations start; the seed procedures queue."""
        for name in self.config.seed_rules:
            source = seedlib.source(name)
            cid = self.evals.source_id(source)
            for s in self.subtasks:
                self._add_rule(s.name, source, f"seed rule {name}", self.evals.answer(cid, s.name), cid)
        names = list(dict.fromkeys([*self.config.seed_procedures, self.config.meta_procedure]))
        for name in names:
            p = self._new_procedure(load_procedure(name), parent=None, origin=f"seed {name}")
            self.to_score.append(p["id"])
            if name == self.config.meta_procedure:
                self.meta_optimizer = p["id"]
        self.phase = "seed_procedures"

    def _next_job(self) -> None:
        """Start the next procedure's scoring or meta run, or move to the next phase."""
        if self.stop_reason is None and getattr(self.llm, "exhausted", False):
            self._stop("LLM budget exhausted")
        elif self.stop_reason is not None:
            self.phase = "done"
        elif self.phase == "seed_procedures":
            if self.to_score:
                self._score(self.to_score.pop(0))
            else:
                self.phase = "iterations"
        elif self.iteration >= self.config.n_iterations:
            self._stop(f"n_iterations ({self.config.n_iterations}) done")
        else:
            self.iteration_start = len(self.procedures)
            self._push_meta_run()

    def _stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.phase = "done"
        self.close()
        log.info("moh stops: %s", self.stop_reason)

    # -- procedures and their meta-utility --------------------------------------------------------

    def _new_procedure(self, source: str, *, parent: str | None, origin: str) -> dict[str, Any]:
        p = {"id": f"p{len(self.procedures)}", "source": source, "idea": idea_of(source), "parent": parent,
             "origin": origin, "iteration": self.iteration if self.phase == "iterations" else None,
             "utility": None, "status": "scoring", "reason": None, "subtasks": {}}
        self.procedures.append(p)
        return p

    def _procedure(self, pid: str) -> dict[str, Any]:
        return next(p for p in self.procedures if p["id"] == pid)

    def _score(self, pid: str) -> None:
        """Begin the meta-utility of procedure `pid`: its check, then one inner run per subtask."""
        p = self._procedure(pid)
        violations = self.sandbox.check(p["source"])
        if violations:
            return self._scored(p, WORST, "failed", "refused by the procedure policy: " +
                                "; ".join(str(v) for v in violations[:5]))
        self.scoring = {"procedure": pid, "index": 0, "best": {}}
        self._push_inner_run(p, self.subtasks[0])

    def _scored(self, p: dict[str, Any], utility: float, status: str, reason: str | None) -> None:
        p.update(utility=float(utility), status=status, reason=reason)
        self.scoring = None
        self.record("procedure", {k: p[k] for k in ("id", "parent", "origin", "iteration", "idea", "utility", "status",
                                                    "reason", "subtasks", "source")})
        meta = self.stack[-1] if self.stack and self.stack[-1].level == META else None
        if meta is not None and meta.pending is not None:
            meta.asked.append(p["id"])
            if not meta.best or p["utility"] > meta.best["utility"]:
                meta.best = {"utility": p["utility"], "procedure": p["id"]}
            self._answer(meta, p["utility"])

    def _push_inner_run(self, p: dict[str, Any], subtask: Subtask) -> None:
        population = [{"source": e["source"], "idea": e["idea"], "utility": e["fitness"]}
                      for e in self.rules[subtask.name][:self.config.pop_size]]
        self._push(INNER, p["id"], subtask.name, prompt.rule_task(subtask), population)

    def _push_meta_run(self) -> None:
        cfg = self.config
        scored = sorted((p for p in self.procedures if p["utility"] is not None), key=lambda p: -p["utility"])
        population = [{"source": p["source"], "idea": p["idea"], "utility": p["utility"]} for p in scored[:cfg.pop_size]]
        task = prompt.procedure_task(self.subtasks, cpu_s=cfg.cpu_s, max_calls=cfg.max_calls,
                                     llm_calls=cfg.llm_calls_per_run, evals=cfg.max_evals_per_subtask)
        self._push(META, self.meta_optimizer, prompt.META_TASK, task, population)

    def _push(self, level: str, pid: str, subtask: str, task: str, population: list[dict[str, Any]]) -> None:
        spec = RunSpec(f"r{self.n_runs}", level, pid, subtask, task, population, int(self.rng.integers(2**31)))
        self.n_runs += 1
        self.stack.append(spec)

    def _meta_utility(self, spec: RunSpec, source: str) -> None:
        known = next((p for p in self.procedures if p["source"] == source and p["utility"] is not None), None)
        if known is not None:
            spec.asked.append(known["id"])
            if not spec.best or known["utility"] > spec.best["utility"]:
                spec.best = {"utility": known["utility"], "procedure": known["id"]}
            return self._answer(spec, known["utility"])
        p = self._new_procedure(source, parent=spec.procedure, origin=f"iteration {self.iteration}")
        self._score(p["id"])

    # -- a run ended (the broker hands it back to its level) ------------------------------------------

    def _inner_ended(self, spec: RunSpec, run: dict[str, Any], returned: str | None) -> None:
        returned_id = self.evals.source_id(returned) if returned else None
        run["returned"] = returned_id or (None if returned is None else "not evaluated")
        self.record("procedure_run", run)
        if spec.best:
            cid = spec.best["candidate"]
            source = next(s for s, c in self.evals.by_source.items() if c == cid)
            self._add_rule(spec.subtask, source, f"found by {spec.procedure} ({spec.run_id})", spec.best["fitness"], cid)
        p = self._procedure(spec.procedure)
        p["subtasks"][spec.subtask] = {"best": spec.best.get("fitness"), "candidate": spec.best.get("candidate"),
                                       "status": run["status"], "reason": run["reason"], "run": spec.run_id,
                                       "found": list(spec.asked), "weight": self._by_name()[spec.subtask].weight}
        assert self.scoring is not None and self.scoring["procedure"] == spec.procedure
        if run["status"] != "ok":
            return self._scored(p, WORST, "failed", f"subtask {spec.subtask}: {run['reason']}")
        self.scoring["best"][spec.subtask] = spec.best.get("fitness")
        self.scoring["index"] += 1
        if self.scoring["index"] < len(self.subtasks):
            return self._push_inner_run(p, self.subtasks[self.scoring["index"]])
        self._scored(p, meta_utility(self.scoring["best"], self.subtasks), "ok", None)

    def _meta_ended(self, spec: RunSpec, run: dict[str, Any], returned: str | None) -> None:
        found = next((p["id"] for p in self.procedures if returned and p["source"] == returned), None)
        run["returned"] = found or (None if returned is None else "not evaluated")
        self.record("procedure_run", run)
        incumbent = self._procedure(self.meta_optimizer)
        new = [p for p in self.procedures[self.iteration_start:] if p["utility"] is not None]
        challenger = max(new, key=lambda p: p["utility"]) if new else None
        accepted = challenger is not None and challenger["utility"] > incumbent["utility"]
        self.record("meta_iteration", {"iteration": self.iteration, "meta_optimizer": incumbent["id"],
                                       "incumbent_utility": incumbent["utility"], "run_status": run["status"],
                                       "run_reason": run["reason"], "returned": run["returned"],
                                       "best_new": None if challenger is None else challenger["id"],
                                       "best_new_utility": None if challenger is None else challenger["utility"],
                                       "accepted": accepted})
        if accepted:
            self.meta_optimizer = challenger["id"]
        self.iteration += 1

    # -- helpers ----------------------------------------------------------------------------------

    def _add_rule(self, subtask: str, source: str, idea: str, fitness: float | None, cid: str | None) -> None:
        """Put a measured rule into `subtask`'s population (best first, one entry per source, pop_size kept)."""
        if fitness is None:
            return
        pop = [e for e in self.rules.get(subtask, []) if e["source"] != source]
        pop.append({"source": source, "idea": idea, "fitness": float(fitness), "candidate": cid})
        pop.sort(key=lambda e: -e["fitness"])  # stable: ties keep the older entry first
        self.rules[subtask] = pop[:self.config.pop_size]

    def _by_name(self) -> dict[str, Subtask]:
        return {s.name: s for s in self.subtasks}

    def _new_id(self) -> str:
        """Candidate ids from the strategy's generator, so a replayed run proposes the same ids."""
        return self.rng.bytes(6).hex()
