"""The evolve strategy: LLM program evolution over update rules (FunSearch / OpenEvolve / ShinkaEvolve style).

Flow: the warm-start seeds are proposed first and evaluated as the initial population. Then each
proposal picks an island (round robin), samples a parent there (fitness x offspring x novelty
weights), picks a model (weights or UCB bandit), an edit mode (diff / full), and asks the LLM with a
prompt showing the parent, its per-task results against tuned AdamW, its feedback, reference seeds
that beat it where it lags, inspirations and the island's recent failures. The response is parsed,
checked and deduplicated; anything unusable becomes an `invalid` candidate whose reason reaches the
next prompt of that island. The strategy never executes candidate code.

Duplicates: a response whose source equals an earlier program's up to comments, whitespace and
names is refused as `invalid` before evaluation (`note["duplicate_of"]` names the earlier one).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Mapping

import numpy as np

from optforge import seeds as seedlib
from optforge.llm.budget import BudgetExhausted
from optforge.llm.client import LLMError
from optforge.llm.measured import clip
from optforge.llm.parse import parse_response
from optforge.llm.selector import ModelSelector
from optforge.search.base import SEARCH_STAGES
from optforge.search.evolve.config import EvolveConfig
from optforge.search.evolve.dedup import normalised_hash
from optforge.search.evolve.population import Population, Program
from optforge.search.evolve.prompt import (
    build_messages,
    format_failures,
    format_inspirations,
    format_references,
    mark_measured,
    summarise,
)
from optforge.types import FLOOR, Candidate, EvaluationResult, Status, content_hash

log = logging.getLogger(__name__)

STATE_VERSION = 1


class EvolveStrategy:
    name = "evolve"

    def __init__(self, config: EvolveConfig, llm: Any, rng: np.random.Generator):
        self.config = config
        self.llm = llm
        self.rng = rng
        self.pop = Population(config.islands)
        self.selector = ModelSelector(llm.settings.model_choices, bandit=llm.settings.bandit)
        self.warm_queue: list[str] = list(config.warm_start)
        self.ref_scores: dict[str, dict[str, float]] = {}
        self.failures: list[deque] = [deque(maxlen=max(config.failures_in_prompt, 1)) for _ in range(config.islands)]
        self.proposals = 0  # LLM proposals made (seeds not counted)
        self.finished = 0  # final results observed
        self.cursor = 0  # next island
        self.llm_errors = 0  # consecutive failed LLM calls
        self.stop_reason: str | None = None

    # -- protocol ---------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        while self.warm_queue and len(out) < n:
            out.append(self._propose_seed(self.warm_queue.pop(0)))
        if self.done():
            return out
        slots = n - len(out)
        if self.config.max_proposals is not None:
            slots = min(slots, self.config.max_proposals - self.proposals)
        plans = []
        for _ in range(max(slots, 0)):
            plan = self._plan()
            if plan is None:
                break
            plans.append(plan)
        if not plans:
            return out
        responses = self.llm.complete_many([{"messages": p["messages"], "model": p["model"]} for p in plans])
        for plan, resp in zip(plans, responses):
            cand = self._handle(plan, resp)
            if cand is not None:
                out.append(cand)
        return out

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        if result.stage not in SEARCH_STAGES:
            log.warning("evolve ignores a %r-stage result of %s: only search-stage results reach the search",
                        result.stage, candidate.id)
            return
        prog = self.pop.programs.get(candidate.id) or self._adopt(candidate)
        if prog.status == "invalid":
            return  # already final (rejected before evaluation)
        if result.status is Status.LOST:
            # infrastructure failure after the engine's retries: says nothing about the candidate, so it
            # is neither a parent nor a failure shown to the model; it just stops being pending
            if prog.status == "pending":
                prog.status = "lost"
            return
        prog.stages.append(result.stage)
        final_before = prog.status != "pending"
        feedback = mark_measured(result.feedback)
        if not result.ok:
            prog.status = result.status.value
            prog.fitness = FLOOR
            prog.result = summarise(result)
            prog.feedback = feedback
            if not final_before:
                reason = feedback or prog.result.get("exception") or result.status.value
                self.failures[prog.island].append({"status": result.status.value, "edit": prog.edit,
                                                   "reason": clip(str(reason), 300)})
                self._final(prog)
            return
        # an ok result ranks the program; a later (train) result of the same program replaces a smoke one
        prog.status = "ok"
        prog.fitness = result.fitness
        prog.result = summarise(result)
        prog.feedback = feedback
        prog.scores = {t: float(v["score"]) for t, v in prog.result["tasks"].items()
                       if isinstance(v.get("score"), (int, float))}
        if prog.seed:
            self.ref_scores[prog.seed] = dict(prog.scores)
        if not final_before:
            self._final(prog)

    def done(self) -> bool:
        if self.stop_reason is None and getattr(self.llm, "exhausted", False):
            self.stop_reason = "LLM budget exhausted"
        if self.stop_reason is not None:
            return not self.warm_queue
        cap = self.config.max_proposals
        return cap is not None and self.proposals >= cap and not self.warm_queue

    def best(self) -> Program | None:
        ranked = self.pop.ranked()
        return ranked[0] if ranked else None

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "population": self.pop.state(),
            "rng": self.rng.bit_generator.state,
            "selector": self.selector.state(),
            "warm_queue": list(self.warm_queue),
            "ref_scores": self.ref_scores,
            "failures": [list(f) for f in self.failures],
            "proposals": self.proposals,
            "finished": self.finished,
            "cursor": self.cursor,
            "llm_errors": self.llm_errors,
            "stop_reason": self.stop_reason,
            "llm": self.llm.state() if hasattr(self.llm, "state") else {},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"evolve state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "this run was written by another optforge version")
        pop = Population.from_state(state["population"])
        if len(pop.islands) != self.config.islands:
            raise ValueError(f"the saved run has {len(pop.islands)} islands but strategy.islands="
                             f"{self.config.islands}; resume with the run's own config")
        self.pop = pop
        self.rng.bit_generator.state = state["rng"]
        self.selector.load_state(state["selector"])
        self.warm_queue = list(state["warm_queue"])
        self.ref_scores = {k: dict(v) for k, v in state["ref_scores"].items()}
        self.failures = [deque(f, maxlen=max(self.config.failures_in_prompt, 1)) for f in state["failures"]]
        self.proposals = int(state["proposals"])
        self.finished = int(state["finished"])
        self.cursor = int(state["cursor"])
        self.llm_errors = int(state["llm_errors"])
        self.stop_reason = state.get("stop_reason")
        if state.get("llm") and hasattr(self.llm, "load_state"):
            self.llm.load_state(state["llm"])

    # -- internals --------------------------------------------------------------------------------

    def _propose_seed(self, name: str) -> Candidate:
        source = seedlib.source(name)
        cand = Candidate.new(source, strategy=self.name, note={"kind": "seed", "seed": name, "warm_start": True},
                             id=self._new_id())
        prog = Program(id=cand.id, source=source, seed=name, island=0, norm_hash=normalised_hash(source))
        self.pop.add(prog, islands=list(range(self.config.islands)))
        return cand

    def _new_id(self) -> str:
        """Candidate ids from the strategy's generator: ids appear in prompts, and prompts must be
        reproducible for replay and resume."""
        return self.rng.bytes(6).hex()

    def _fix_parent(self) -> Program | None:
        """With no success yet and nothing pending, evolve from the latest evaluated failure."""
        if self.pop.pending():
            return None
        failed = [p for p in self.pop.programs.values() if p.status not in ("ok", "pending", "invalid", "lost")]
        return failed[-1] if failed else None

    def _plan(self) -> dict[str, Any] | None:
        cfg = self.config
        island = self.cursor % cfg.islands
        parent = self.pop.sample_parent(island, self.rng, cfg.selection_sharpness, cfg.novelty_weight) or self._fix_parent()
        if parent is None:
            return None
        self.cursor += 1
        if cfg.edit == "sample":
            edit = "diff" if self.rng.random() < cfg.diff_prob else "full"
        else:
            edit = cfg.edit
        model = self.selector.choose(self.rng)
        insp = self.pop.inspirations(island, parent, self.rng, cfg.inspirations_top, cfg.inspirations_diverse)
        refs = self.pop.references(parent, self.ref_scores, cfg.references)
        messages = build_messages(
            parent=parent,
            edit=edit,
            references=format_references(refs, {r[0]: seedlib.source(r[0]) for r in refs}, self.ref_scores),
            inspirations=format_inspirations(insp),
            failures=format_failures(list(self.failures[island])),
            template_dir=cfg.template_dir,
        )
        parent.children += 1
        self.proposals += 1
        return {"island": island, "parent": parent, "edit": edit, "model": model, "messages": messages,
                "generation": self.proposals,
                "inspirations": [p.id for p in insp], "references": [r[0] for r in refs]}

    def _handle(self, plan: dict[str, Any], resp: Any) -> Candidate | None:
        parent: Program = plan["parent"]
        island = plan["island"]
        if isinstance(resp, BudgetExhausted):
            parent.children -= 1
            self.proposals -= 1
            self.stop_reason = f"LLM budget exhausted: {resp}"
            log.info("evolve stops proposing: %s", resp)
            return None
        if isinstance(resp, LLMError):
            parent.children -= 1
            self.llm_errors += 1
            self.failures[island].append({"status": "llm_error", "edit": plan["edit"], "reason": str(resp)[:300]})
            log.warning("evolve: LLM call failed (%d in a row): %s", self.llm_errors, resp)
            if self.llm_errors >= self.config.max_llm_errors:
                self.stop_reason = f"{self.llm_errors} LLM call(s) failed in a row; last: {resp}"
            return None
        self.llm_errors = 0
        parsed = parse_response(resp.text, parent.source, finish_reason=resp.finish_reason,
                                reasoning=resp.reasoning, max_tokens=self.llm.settings.max_tokens)
        reason = parsed.reason
        source = parsed.source if parsed.source is not None else resp.text
        note: dict[str, Any] = {
            "kind": "llm", "island": island, "edit": plan["edit"], "parsed_as": parsed.kind, "model": resp.model,
            "finish_reason": resp.finish_reason,
            "prompt_hash": resp.call.prompt_hash, "dollars": resp.call.dollars, "generation": plan["generation"],
            "inspirations": plan["inspirations"], "references": plan["references"],
        }
        norm = normalised_hash(source) if not reason else ""
        if not reason:
            twin = self._static_twin(source, norm)
            if twin is not None:
                reason = f"duplicate of candidate {twin} (same source up to comments, whitespace and names)"
                note["duplicate_of"] = twin
        if reason:
            note.update(status="invalid", reason=reason)
        cand = Candidate.new(source, parents=(parent.id,), strategy=self.name, note=note, id=self._new_id())
        prog = Program(id=cand.id, source=source, parent=parent.id, island=island,
                       status="invalid" if reason else "pending", fitness=FLOOR if reason else None,
                       feedback=reason, model=resp.model, dollars=resp.call.dollars, edit=plan["edit"],
                       norm_hash=norm)
        self.pop.add(prog)
        if reason:
            self.failures[island].append({"status": "invalid", "edit": plan["edit"], "reason": reason[:300]})
            self._final(prog)
        return cand

    def _static_twin(self, source: str, norm: str) -> str | None:
        h = content_hash(source)
        for p in self.pop.programs.values():
            if p.status == "invalid":
                continue
            if content_hash(p.source) == h or (norm and p.norm_hash == norm):
                return p.id
        return None

    def _adopt(self, candidate: Candidate) -> Program:
        """A candidate this strategy did not propose (e.g. injected by the engine): track it on island 0."""
        parent = candidate.parents[0] if candidate.parents else None
        prog = Program(id=candidate.id, source=candidate.source, parent=parent, island=0,
                       seed=candidate.note.get("seed") if isinstance(candidate.note, Mapping) else None,
                       norm_hash=normalised_hash(candidate.source))
        self.pop.add(prog)
        return prog

    def _final(self, prog: Program) -> None:
        """A program's final result is known: credit the bandit, count, migrate on schedule."""
        if not prog.credited and prog.model:
            parent = self.pop.programs.get(prog.parent or "")
            gain = 0.0
            if prog.fitness is not None and parent is not None and parent.fitness is not None:
                gain = float(prog.fitness) - float(parent.fitness)
            self.selector.update(prog.model, gain, prog.dollars)
            prog.credited = True
        self.finished += 1
        cfg = self.config
        if cfg.migration_interval and self.finished % cfg.migration_interval == 0:
            moves = self.pop.migrate(cfg.migration_size)
            if moves:
                log.info("evolve migration: %s", moves)
