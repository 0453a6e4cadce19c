"""The `opto` strategy: OptoPrime steps over the rule's variables, one chain per `chains`.

A chain (Cheng, Nie, Swaminathan, NeurIPS 2024, arXiv 2406.16218; `opto/optimizers/optoprime.py`):

1. its variables (`variables.variables_of` of its current rule) are evaluated by the engine: the
   candidate's own search stages, then, with `detail: trace` or a `minibatch`, the *oracle*: a
   rollout of the same candidate on one fresh search seed (`Rollout.repeat(cid, 1, detail=...)`, the
   lr tuned again so the diverged lr trials are traced), on all the search suite's tasks or on
   `minibatch` of them drawn by the chain's RNG. The platform records trace detail only on rollouts,
   so this is the route; a failed candidate cannot be rolled out, and its own failed result is its
   oracle. A rollout that fails (lost, crashed, timed out...) is feedback too: its failure text opens
   #Feedback, above the sections of the candidate's own result; the step goes on;
2. the prompt is built from the oracle (`sections.render_sections`, `mask` applied) and the chain's
   memory; then (variables, feedback) joins the memory (FIFO, `memory_size`);
3. one LLM call; the answer is parsed and projected (`suggestion.parse_suggestion`):
   - update: a new candidate, the chain's variables from now on (as OptoPrime's `update()`, also
     when it then fails: its failure is the next feedback). Its note keeps the change record
     (`change`, `lineage`: "code rewritten; constant BETA2 0.999 -> 0.995");
   - TERMINATE / no change: the chain ends (another step would ask the same question again);
   - invalid (malformed, truncated, refused by the projection): an `invalid` candidate with the
     reason, which the chain's next prompt shows once as its feedback; a second unusable answer in a
     row ends the chain. Nothing is retried in a loop.

All chains start from one seed candidate (`start`, warm start). Each chain has its own RNG
(candidate ids), memory and variables; ready chains' calls go out together (`complete_many`), so
chains fill the engine's slots. `best()` is the best chain (best ok fitness of its candidates), the
state `optforge show` reports (`state()["best"]`, and a `best_chain` record on every new best).
Held-out results never reach a chain: only search-stage results are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from optforge import seeds as seedlib
from optforge.evaluators.trace import anonymous_labels
from optforge.llm.budget import BudgetExhausted
from optforge.llm.client import LLMError
from optforge.search.base import SEARCH_STAGES, Rollout, StrategyBase
from optforge.search.opto.memory import Memory
from optforge.search.opto.params import OptoConfig
from optforge.search.opto.prompt import build_messages
from optforge.search.opto.sections import TaskInput, fit, render_sections, task_input
from optforge.search.opto.suggestion import INVALID, NO_CHANGE, parse_suggestion
from optforge.search.opto.variables import variables_of
from optforge.types import Candidate, EvaluationResult, Status

log = logging.getLogger(__name__)

STATE_VERSION = 1
MAX_LLM_ERRORS = 5  # LLM calls failed in a row before the strategy stops proposing

# a chain's phase
EVALUATING = "evaluating"  # its current candidate's search stages run
TRACING = "tracing"  # its current candidate's trace rollout runs
READY = "ready"  # it has an oracle and may take a step
ENDED = "ended"


@dataclass
class Chain:
    """One OptoPrime chain: its current rule (the candidate `cid`), phase, oracle and memory."""

    index: int
    rng: np.random.Generator
    memory: Memory
    cid: str = ""
    source: str = ""
    phase: str = EVALUATING
    oracle: EvaluationResult | None = None
    invalid_reason: str = ""  # the last answer's reason, shown once as the next feedback
    steps: int = 0
    best: dict[str, Any] = field(default_factory=dict)  # {"candidate", "fitness"}
    end_reason: str = ""
    oracle_tasks: list[str] | None = None  # the minibatch of the rollout awaited (None: every task)
    trace_failure: str = ""  # why the current variables' oracle rollout gave no result, in #Feedback

    def state(self) -> dict[str, Any]:
        return {"index": self.index, "rng": self.rng.bit_generator.state, "memory": self.memory.to_state(),
                "cid": self.cid, "source": self.source, "phase": self.phase,
                "oracle": self.oracle.to_dict() if self.oracle is not None else None,
                "invalid_reason": self.invalid_reason, "steps": self.steps, "best": dict(self.best),
                "end_reason": self.end_reason, "oracle_tasks": self.oracle_tasks, "trace_failure": self.trace_failure}

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> "Chain":
        rng = np.random.default_rng()
        rng.bit_generator.state = s["rng"]
        return cls(int(s["index"]), rng, Memory.from_state(s["memory"]), s["cid"], s["source"], s["phase"],
                   EvaluationResult.from_dict(s["oracle"]) if s["oracle"] is not None else None,
                   s["invalid_reason"], int(s["steps"]), dict(s["best"]), s["end_reason"],
                   s.get("oracle_tasks"), s.get("trace_failure", ""))


class OptoStrategy(StrategyBase):
    name = "opto"

    def __init__(self, config: OptoConfig, llm: Any, seed: int, record: Any = None):
        self.config = config
        self.llm = llm
        self.record = record or (lambda kind, data, candidate_id=None: None)
        children = np.random.SeedSequence(seed).spawn(config.chains)
        self.chains = [Chain(i, np.random.default_rng(s), Memory(config.memory_size)) for i, s in enumerate(children)]
        self.seed_queued = True  # the start candidate is still to be proposed
        self.rollouts: list[str] = []  # candidate ids whose trace rollout is to be proposed
        self.llm_errors = 0
        self.stop_reason: str | None = None
        self._inputs: dict[str, TaskInput] = {}

    # -- protocol ---------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate | Rollout]:
        out: list[Candidate | Rollout] = []
        if self.seed_queued:
            self.seed_queued = False
            out.append(self._start_candidate())
        while self.rollouts and len(out) < n:
            cid = self.rollouts.pop(0)
            tasks = next((c.oracle_tasks for c in self._waiting(cid, TRACING)), None)
            out.append(Rollout.repeat(cid, 1, detail=self.config.detail, tasks=tuple(tasks) if tasks else None,
                                      note={"opto": "oracle"}))
        ready = [c for c in self.chains if c.phase == READY][: max(n - len(out), 0)]
        if ready and not self.done():
            out.extend(self._steps(ready))
        return out

    def busy(self) -> bool:
        return not self.done() and any(c.phase in (EVALUATING, TRACING) for c in self.chains)

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        if result.stage and result.stage not in SEARCH_STAGES:
            return  # held-out results never reach a chain
        trace, tasks = False, None
        for chain in self._waiting(candidate.id, EVALUATING):
            fitness = result.fitness if result.ok else None
            if fitness is not None and (not chain.best or fitness > chain.best["fitness"]):
                chain.best = {"candidate": candidate.id, "fitness": float(fitness)}
                if self.best() is chain:
                    self.record("best_chain", {"chain": chain.index, **chain.best}, candidate.id)
            if chain.end_reason:
                self._end(chain, chain.end_reason)
            elif result.ok and self.config.rolls_out:
                # the candidate's own result stays, for a rollout that fails; chains sharing it share the minibatch
                tasks = tasks or self._draw_tasks(chain, result)
                chain.oracle, chain.oracle_tasks, chain.phase, trace = result, tasks, TRACING, True
            else:
                chain.oracle, chain.phase = result, READY
        if trace and candidate.id not in self.rollouts:
            self.rollouts.append(candidate.id)

    def observe_rollout(self, rollout: Rollout, result: EvaluationResult) -> None:
        for chain in self._waiting(rollout.candidate_id, TRACING):
            chain.phase, chain.oracle_tasks = READY, None
            if result.ok or chain.oracle is None:  # None: a state saved before the own result was kept
                chain.oracle = result
            else:  # feedback too: the failure text, above the candidate's own result (kept in chain.oracle)
                text = result.feedback.strip() or f"The evaluation ended with status {result.status.value}."
                chain.trace_failure = (f"The oracle evaluation of these variables (a {self.config.detail}-detail rollout "
                                       f"on a fresh seed) ended with status {result.status.value}: {text}\n"
                                       f"The sections show their own {chain.oracle.stage} evaluation instead.")

    def done(self) -> bool:
        if self.stop_reason is None and getattr(self.llm, "exhausted", False):
            self.stop_reason = "LLM budget exhausted"
        if self.seed_queued or self.rollouts:
            return False
        if self.stop_reason is not None:
            return True
        return all(c.phase == ENDED for c in self.chains)

    def best(self) -> Chain | None:
        """The chain whose best candidate has the highest fitness (None before any ok result)."""
        scored = [c for c in self.chains if c.best]
        return max(scored, key=lambda c: (c.best["fitness"], -c.index)) if scored else None

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        best = self.best()
        return {"version": STATE_VERSION, "chains": [c.state() for c in self.chains],
                "seed_queued": self.seed_queued, "rollouts": list(self.rollouts), "llm_errors": self.llm_errors,
                "stop_reason": self.stop_reason,
                "best": None if best is None else {"chain": best.index, **best.best, "steps": best.steps,
                                                   "memory": best.memory.to_state()},
                "llm": self.llm.state() if hasattr(self.llm, "state") else {}}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"opto state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "this run was written by another optforge version")
        if len(state["chains"]) != self.config.chains:
            raise ValueError(f"the saved run has {len(state['chains'])} chains but strategy.chains="
                             f"{self.config.chains}; resume with the run's own config")
        self.chains = [Chain.from_state(s) for s in state["chains"]]
        self.seed_queued = bool(state["seed_queued"])
        self.rollouts = list(state["rollouts"])
        self.llm_errors = int(state["llm_errors"])
        self.stop_reason = state["stop_reason"]
        if state.get("llm") and hasattr(self.llm, "load_state"):
            self.llm.load_state(state["llm"])

    # -- internals --------------------------------------------------------------------------------

    def _start_candidate(self) -> Candidate:
        source = seedlib.source(self.config.start)
        cand = Candidate.new(source, strategy=self.name, id=self.chains[0].rng.bytes(6).hex(),
                             note={"kind": "seed", "seed": self.config.start, "warm_start": True})
        for chain in self.chains:
            chain.cid, chain.source, chain.phase = cand.id, source, EVALUATING
        return cand

    def _waiting(self, cid: str, phase: str) -> list[Chain]:
        return [c for c in self.chains if c.cid == cid and c.phase == phase]

    def _steps(self, chains: list[Chain]) -> list[Candidate]:
        prompts = [self._prompt(c) for c in chains]
        responses = self.llm.complete_many([{"messages": messages} for messages, _, _ in prompts])
        out = []
        for chain, (_, feedback, labels), resp in zip(chains, prompts, responses):
            cand = self._take(chain, feedback, labels, resp)
            if cand is not None:
                out.append(cand)
        return out

    def _prompt(self, chain: Chain) -> tuple[list[dict[str, str]], str, dict[str, str]]:
        """The step's messages, the feedback they show and the task labels they use ("task i" -> task
        name, for the `step` record only: prompts never name a task); (variables, feedback) then joins
        the memory."""
        cfg = self.config
        variables = variables_of(chain.source, cfg.split_constants)
        result = chain.oracle
        inputs = self._task_inputs(result)
        labels = anonymous_labels(chain.source, sorted(set(inputs) | set(result.metrics.get("tasks") or {})))
        sections = render_sections(result, variables, inputs=inputs, budgets=cfg.budgets, labels=labels,
                                   mask=cfg.mask, source=chain.source)
        if chain.trace_failure:
            sections["Feedback"] = fit(f"{chain.trace_failure}\n{sections['Feedback']}", cfg.budgets.feedback)
        if chain.invalid_reason:
            sections["Feedback"] = fit(f"Your last answer could not be used, and the variables are unchanged: "
                                       f"{chain.invalid_reason}\nThe feedback of the variables' evaluation:\n"
                                       f"{sections['Feedback']}", cfg.budgets.feedback)
        messages = build_messages(sections, chain.memory.render(cfg.budgets.memory))
        chain.memory.add(variables, sections["Feedback"])
        return messages, sections["Feedback"], {label: name for name, label in labels.items()}

    def _task_inputs(self, result: EvaluationResult) -> dict[str, TaskInput]:
        names = list((result.metrics.get("tasks") or {}))
        missing = [n for n in names if n not in self._inputs]
        if missing:
            self._inputs.update(_find_task_inputs(missing))
        return {n: self._inputs[n] for n in names if n in self._inputs}

    def _take(self, chain: Chain, feedback: str, labels: dict[str, str], resp: Any) -> Candidate | None:
        if isinstance(resp, BudgetExhausted):
            self.stop_reason = f"LLM budget exhausted: {resp}"
            log.info("opto stops proposing: %s", resp)
            return None
        if isinstance(resp, LLMError):
            self.llm_errors += 1
            log.warning("opto: LLM call failed (%d in a row): %s", self.llm_errors, resp)
            if self.llm_errors >= MAX_LLM_ERRORS:
                self.stop_reason = f"{self.llm_errors} LLM call(s) failed in a row; last: {resp}"
            return None
        self.llm_errors = 0
        chain.steps += 1
        outcome = parse_suggestion(resp.text, chain.source, split_constants=self.config.split_constants,
                                   finish_reason=resp.finish_reason, reasoning=resp.reasoning,
                                   max_tokens=self.llm.settings.max_tokens)
        note: dict[str, Any] = {"kind": "opto", "chain": chain.index, "step": chain.steps, "parsed_as": outcome.kind,
                                "model": resp.model, "finish_reason": resp.finish_reason,
                                "prompt_hash": resp.call.prompt_hash, "dollars": resp.call.dollars}
        at_cap = self.config.max_steps is not None and chain.steps >= self.config.max_steps
        step = {"chain": chain.index, "step": chain.steps, "parent": chain.cid, "outcome": outcome.kind,
                "feedback": feedback, "tasks": labels}
        if outcome.kind == NO_CHANGE:
            self.record("step", {**step, "change": "TERMINATE: no change"})
            self._end(chain, "TERMINATE: the model suggested no change")
            return None
        if outcome.kind == INVALID:
            again = bool(chain.invalid_reason)
            chain.invalid_reason = outcome.reason
            note.update(status="invalid", reason=outcome.reason)
            cand = Candidate.new(outcome.source or resp.text, parents=(chain.cid,), strategy=self.name, note=note,
                                 id=chain.rng.bytes(6).hex())
            self.record("step", {**step, "change": f"invalid: {outcome.reason}"}, cand.id)
            if again or at_cap:
                self._end(chain, "two unusable answers in a row" if again else f"max_steps={self.config.max_steps}")
            return cand
        applied = outcome.applied
        note.update(change=applied.record(), lineage=applied.describe())
        cand = Candidate.new(applied.source, parents=(chain.cid,), strategy=self.name, note=note,
                             id=chain.rng.bytes(6).hex())
        self.record("step", {**step, "change": applied.describe()}, cand.id)
        chain.cid, chain.source, chain.oracle, chain.invalid_reason = cand.id, applied.source, None, ""
        chain.trace_failure = ""
        chain.phase = EVALUATING
        if at_cap:
            chain.end_reason = f"max_steps={self.config.max_steps}"
        return cand

    def _draw_tasks(self, chain: Chain, result: EvaluationResult) -> list[str] | None:
        """`minibatch` of the result's tasks (the search suite's), drawn by `chain`'s RNG, in name order;
        None (every task) without a minibatch or when it covers them all."""
        names = sorted(result.metrics.get("tasks") or {})
        k = self.config.minibatch
        if k is None or k >= len(names):
            return None
        return sorted(names[i] for i in chain.rng.choice(len(names), size=k, replace=False))

    def _end(self, chain: Chain, reason: str) -> None:
        chain.phase, chain.end_reason = ENDED, reason
        self.record("chain_ended", {"chain": chain.index, "steps": chain.steps, "reason": reason, **chain.best})


def _find_task_inputs(names: list[str]) -> dict[str, TaskInput]:
    """#Inputs of the named tasks, found in the shipped search suites (the strategy is not told the
    run's suite); a task of a user suite is shown as family "unknown"."""
    from optforge.evaluators.tasks import get_suite, suite_names

    found: dict[str, TaskInput] = {}
    for suite in suite_names():
        if "heldout" in suite:
            continue
        for task in get_suite(suite).tasks:
            if task.name in names and task.name not in found:
                found[task.name] = task_input(task)
    return {n: found.get(n, TaskInput("unknown", {}, 50, 0)) for n in names}
