"""The POLCA strategy: one iteration of priority search over noisy minibatch rollouts
(`AgentOpt/OpenTrace` `polca.py`, `priority_search.py`), driven by the engine's propose/observe loop.

The warm-start seeds are proposed first; each one observed ok enters the queue with the highest
priority (no rollout yet: CEILING). Then each iteration:

1. pop the top `num_candidates` (the exploration set);
2. draw `num_batches` minibatches of `batch_size` (task, search seed) pairs (`minibatch.PairSampler`
   over the search suite's tasks and `Suite.search_seeds`);
3. roll every exploration candidate on every pair (one `Rollout` per pair, so each pair has its own
   score) and add the scores to the candidates' histories;
4. ask the LLM for `num_proposals` children per (candidate, minibatch), in OptoPrimeV2 form
   (`prompt.build_messages`), the summarizer's guidance as #Context;
5. embed the valid children (`behaviour`: the rule's probe updates through `ctx.rule_probe`) and
   filter them with the epsilon-net against memory plus the exploration set; a rejected child is
   never evaluated, and is kept as a strategy record `epsilon_rejection` with its distance;
6. propose the survivors; each one observed ok at `train` is validated on its minibatch (or on a
   fresh validation minibatch with `validation_minibatch`);
7. push the exploration set and the validated children back, with their new priorities (record
   `queue`: the top entries with mean, sd and n); every `summarize_every` iterations the summarizer
   replaces the context (record `summary`).

While it waits for results, `propose` returns nothing and `busy()` is True. An unusable answer or a
rule the probe cannot run becomes an `invalid` candidate (stored, not evaluated). The LLM budget, or
`max_iterations`, ends the search after the iteration in progress. `state()` holds everything (the
queue, the sets in flight, the sampler, the RNG, the LLM spend), so a resume continues exactly.
"""

from __future__ import annotations

import logging
import random
import statistics
from typing import Any, Callable

import numpy as np

from optforge import seeds as seedlib
from optforge.llm.budget import BudgetExhausted
from optforge.llm.client import LLMError
from optforge.llm.replay import ReplayError
from optforge.search.base import Rollout, StrategyBase
from optforge.search.common.render import mark_measured
from optforge.search.polca import memory as mem
from optforge.search.polca import summarizer
from optforge.search.polca.children import ask_children
from optforge.search.polca.embedders import Embed
from optforge.search.polca.epsilon_net import epsilon_net
from optforge.search.polca.minibatch import PairSampler
from optforge.search.polca.params import PolcaConfig
from optforge.types import CEILING, FLOOR, Candidate, EvaluationResult, Status

log = logging.getLogger(__name__)

STATE_VERSION = 1
QUEUE_SHOWN = 5
"""Top queue entries kept in each iteration's `queue` record (`optforge show RUN --records --kind queue`)."""


class PolcaStrategy(StrategyBase):
    name = "polca"

    def __init__(self, config: PolcaConfig, llm: Any, rng: np.random.Generator, embed: Embed,
                 record: Callable[..., None]):
        """`embed(source)` -> the rule's normalised embedding (raises ValueError or RuntimeError when
        it has none); `record(kind, data, candidate_id=None)` keeps a strategy record."""
        self.config = config
        self.llm = llm
        self.rng = rng
        self.embed = embed
        self.record = record
        self.memory = mem.Memory(config.priority, config.ucb_constant, config.memory_size, config.min_rollouts)
        self.sampler: PairSampler | None = None
        self.phase = "start"
        self.iteration = 0
        self.outbox: list[dict[str, Any]] = []  # proposals not handed to the engine yet (JSON form)
        self.pending: list[str] = []  # keys of proposals handed out whose results have not come
        self.exploring: list[mem.Candidate] = []
        self.batches: list[list[tuple[str, int]]] = []
        self.children: dict[str, dict[str, Any]] = {}  # proposed child id -> parent, batch, source, embedding
        self.validating: list[mem.Candidate] = []
        self.validate_on: dict[str, list[tuple[str, int]]] = {}  # child id -> the minibatch it came from
        self.failed: list[mem.Candidate] = []  # children that failed their evaluation (for the summarizer)
        self.context = ""
        self.summarized: list[str] = []
        self.proposals = 0  # LLM proposal calls made
        self.rejected = 0  # proposals the epsilon-net rejected
        self.stop_reason: str | None = None

    # -- protocol ---------------------------------------------------------------------------------

    def propose(self, n: int) -> list[Candidate | Rollout]:
        while not self.outbox and not self.pending and self.phase != "stopped":
            self._advance()
        taken, self.outbox = self.outbox[:max(n, 0)], self.outbox[max(n, 0):]
        out: list[Candidate | Rollout] = []
        for item in taken:
            if item["type"] == "candidate":
                if item["note"].get("status") != "invalid":
                    self.pending.append(_ckey(item["id"]))
                out.append(Candidate.new(item["source"], parents=tuple(item["parents"]), strategy=self.name,
                                         note=item["note"], id=item["id"]))
            else:
                self.pending.append(_rkey(item["cid"], item["purpose"], item["task"], item["seed"]))
                out.append(Rollout(item["cid"], tasks=(item["task"],), seeds=(item["seed"],), detail=self.config.detail,
                                   note={"purpose": item["purpose"], "task": item["task"], "seed": item["seed"],
                                         "iteration": self.iteration}))
        return out

    def busy(self) -> bool:
        return self.phase != "stopped"

    def done(self) -> bool:
        return self.phase == "stopped" and not self.outbox

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        key = _ckey(candidate.id)
        if key not in self.pending:
            return  # an invalid candidate's refusal, or a repeat after a resume
        self.pending.remove(key)
        info = self.children.pop(candidate.id, None)
        parent = info["parent"] if info else None
        if result.ok and self.sampler is None:
            self.sampler = self._sampler(result)
        c = self.memory.new(candidate.id, candidate.source, parent)
        if info:
            c.embedding = info["embedding"]
        if info is None:  # a warm-start seed: queued first, with the highest priority (no rollout yet)
            if result.ok:
                self.memory.push(c, self.iteration)
            return
        if result.ok:
            self.validating.append(c)
            self.validate_on[c.id] = [(str(t), int(s)) for t, s in info["batch"]]
        else:  # shown to the summarizer as a failure on its minibatch; never queued (it cannot be rolled out)
            score = None if result.status is Status.LOST else FLOOR
            c.add_rollouts(mem.Rollout(t, s, score, mark_measured(result.feedback)) for t, s in info["batch"])
            self.failed.append(c)

    def observe_rollout(self, rollout: Rollout, result: EvaluationResult) -> None:
        note = rollout.note
        task, seed, purpose = str(note["task"]), int(note["seed"]), str(note["purpose"])
        key = _rkey(rollout.candidate_id, purpose, task, seed)
        if key not in self.pending:
            return
        self.pending.remove(key)
        owner = next(c for c in (self.exploring if purpose == "explore" else self.validating)
                     if c.id == rollout.candidate_id)
        owner.add_rollouts([mem.Rollout(task, seed, _score(result, task), mark_measured(result.feedback))])

    def best(self) -> mem.Candidate | None:
        """The exploit pick: the best mean over candidates with at least `min_rollouts` rollouts."""
        return self.memory.best([*self.exploring, *self.validating])

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "memory": self.memory.state(),
            "sampler": self.sampler.state() if self.sampler else None,
            "rng": self.rng.bit_generator.state,
            "phase": self.phase,
            "iteration": self.iteration,
            "outbox": self.outbox,
            "pending": self.pending,
            "exploring": [c.to_json() for c in self.exploring],
            "batches": [[list(p) for p in b] for b in self.batches],
            "children": self.children,
            "validating": [c.to_json() for c in self.validating],
            "validate_on": {k: [list(p) for p in b] for k, b in self.validate_on.items()},
            "failed": [c.to_json() for c in self.failed],
            "context": self.context,
            "summarized": self.summarized,
            "proposals": self.proposals,
            "rejected": self.rejected,
            "stop_reason": self.stop_reason,
            "llm": self.llm.state() if hasattr(self.llm, "state") else {},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"polca state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "this run was written by another optforge version")
        self.memory.load_state(state["memory"])
        sampler = state.get("sampler")
        self.sampler = None
        if sampler:
            self.sampler = PairSampler(sampler["tasks"], sampler["seeds"], sampler["seed"])
            self.sampler.load_state(sampler)
        self.rng.bit_generator.state = state["rng"]
        self.phase, self.iteration = state["phase"], int(state["iteration"])
        self.outbox, self.pending = list(state["outbox"]), list(state["pending"])
        self.exploring = [mem.Candidate.from_json(c) for c in state["exploring"]]
        self.batches = [[(str(t), int(s)) for t, s in b] for b in state["batches"]]
        self.children = dict(state["children"])
        for info in self.children.values():
            info["batch"] = [(str(t), int(s)) for t, s in info["batch"]]
        self.validating = [mem.Candidate.from_json(c) for c in state["validating"]]
        self.validate_on = {k: [(str(t), int(s)) for t, s in b] for k, b in state["validate_on"].items()}
        self.failed = [mem.Candidate.from_json(c) for c in state["failed"]]
        self.context, self.summarized = state["context"], list(state["summarized"])
        self.proposals, self.rejected = int(state["proposals"]), int(state["rejected"])
        self.stop_reason = state.get("stop_reason")
        if state.get("llm") and hasattr(self.llm, "load_state"):
            self.llm.load_state(state["llm"])

    # -- the iteration, one step per call ---------------------------------------------------------

    def _advance(self) -> None:
        """Move to the next step; called when nothing is queued to hand out and nothing is awaited."""
        step = {"start": self._warm_start, "ready": self._begin, "explored": self._propose_children,
                "children": self._validate, "validated": self._finish}[self.phase]
        step()

    def _warm_start(self) -> None:
        for name in self.config.warm_start:
            self.outbox.append({"type": "candidate", "id": self._new_id(), "source": seedlib.source(name),
                                "parents": [], "note": {"kind": "seed", "seed": name, "warm_start": True}})
        self.phase = "ready"  # the next iteration begins once the results awaited have come

    def _stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.phase = "stopped"
        log.info("polca stops: %s", self.stop_reason)

    def _begin(self) -> None:
        """Step 1-3: pop the exploration set, draw the minibatches, roll the set on them."""
        cfg = self.config
        if self.stop_reason is None and getattr(self.llm, "exhausted", False):
            self.stop_reason = "LLM budget exhausted"
        if self.stop_reason is not None:
            return self._stop(self.stop_reason)
        if cfg.max_iterations is not None and self.iteration >= cfg.max_iterations:
            return self._stop(f"max_iterations ({cfg.max_iterations}) reached")
        if self.sampler is None or not len(self.memory):
            return self._stop("no warm-start seed was evaluated ok: nothing to search from")
        self.exploring = self.memory.pop_top(cfg.num_candidates, self.iteration)
        self.batches = self.sampler.minibatches(cfg.batch_size, cfg.num_batches)
        for c in self.exploring:
            held = {(r.task, r.seed) for r in c.rollouts}
            for task, seed in (p for b in self.batches for p in b):
                if (task, seed) not in held:
                    self.outbox.append({"type": "rollout", "cid": c.id, "purpose": "explore", "task": task, "seed": seed})
        self.phase = "explored"

    def _propose_children(self) -> None:
        """Step 4-5: LLM proposals per (candidate, minibatch) (`children`), then the epsilon-net."""
        asked = ask_children(self.exploring, self.batches, context=self.context, llm=self.llm, config=self.config,
                             embed=self.embed, new_id=self._new_id, iteration=self.iteration)
        self.stop_reason = self.stop_reason or asked.stop_reason
        self.proposals += asked.calls
        self.outbox += asked.invalid
        self._filter(asked.usable)
        self.phase = "children" if self.children else "validated"

    def _filter(self, valid: list[dict[str, Any]]) -> None:
        """The epsilon-net over `valid` against memory and the exploration set; survivors are proposed."""
        cfg = self.config
        if cfg.uses_epsilon_net:
            seen = [(c.id, self._embedding_of(c)) for c in [*self.memory.candidates(), *self.exploring]]
            seen = [(k, v) for k, v in seen if v is not None]
            net = epsilon_net([(v["id"], v["embedding"]) for v in valid], seen, cfg.epsilon_value)
            by_id = {v["id"]: v for v in valid}
            survivors = [by_id[d.key] for d in net.accepted]
            for d in net.rejected:
                v = by_id[d.key]
                self.rejected += 1
                self.record("epsilon_rejection", {"iteration": self.iteration, "parent": v["parents"][0],
                                                  "distance": d.distance, "nearest": d.nearest,
                                                  "epsilon": cfg.epsilon_value, "embedding": cfg.embedding,
                                                  "source": v["source"], "prompt_hash": v["note"]["prompt_hash"]})
        else:
            survivors = valid
        for v in survivors:
            self.children[v["id"]] = {"parent": v["parents"][0], "batch": [list(p) for p in self.batches[v["batch"]]],
                                      "embedding": v.get("embedding")}
            self.outbox.append({k: v[k] for k in ("type", "id", "source", "parents", "note")})

    def _embedding_of(self, c: mem.Candidate) -> list[float] | None:
        """`c`'s embedding, computed once (seeds get theirs when first compared); None if it has none."""
        if c.embedding is None:
            try:
                c.embedding = [float(x) for x in self.embed(c.source)]
            except ReplayError:
                raise
            except (ValueError, RuntimeError) as e:  # BudgetExhausted too: the net then ignores this point
                log.warning("polca: candidate %s has no embedding (%s); the epsilon-net ignores it", c.id, e)
        return c.embedding

    def _validate(self) -> None:
        """Step 6: roll each child observed ok on its minibatch (or on a fresh validation minibatch)."""
        fresh = self.sampler.draw(self.config.batch_size) if self.config.validation_minibatch and self.validating else None
        for c in self.validating:
            for task, seed in fresh or self.validate_on[c.id]:
                self.outbox.append({"type": "rollout", "cid": c.id, "purpose": "validate", "task": task, "seed": seed})
        self.phase = "validated"

    def _finish(self) -> None:
        """Step 7: push everything back; the summarizer on schedule; next iteration."""
        for c in [*self.exploring, *self.validating]:
            for gone in self.memory.push(c, self.iteration):
                self.record("evicted", {"iteration": self.iteration, "mean": gone.mean, "n": gone.n}, gone.id)
        self.exploring, self.validating, self.batches, self.validate_on = [], [], [], {}
        self.record("queue", {"iteration": self.iteration, "rejected_so_far": self.rejected,
                              "top": [_entry(c, self.memory.priority(c, self.iteration))
                                      for c in self.memory.ranked(self.iteration)[:QUEUE_SHOWN]]})
        self.iteration += 1
        if self.config.uses_summarizer and self.iteration % self.config.summarize_every == 0:
            self._summarize()
        self.phase = "ready"  # the next iteration begins once the results awaited have come

    def _summarize(self) -> None:
        cfg = self.config
        picker = random.Random(int(self.rng.integers(2**63)))
        shown = summarizer.sample_for_summary([*self.memory.candidates(), *self.failed], picker,
                                              cfg.summary_candidates, cfg.success_threshold, set(self.summarized))
        if not shown:
            return
        try:
            resp = self.llm.complete(summarizer.build_messages(self.context, shown))
        except BudgetExhausted as e:
            self.stop_reason = self.stop_reason or f"LLM budget exhausted: {e}"
            return
        except LLMError as e:
            self.record("summary", {"iteration": self.iteration, "ok": False, "reason": f"LLM call failed: {e}"})
            return
        read = summarizer.read_summary(resp.text, resp.finish_reason, resp.reasoning)
        self.context = summarizer.next_context(self.context, read)
        if read.ok:
            self.summarized += [s.candidate.id for s in shown]
        self.record("summary", {"iteration": self.iteration, "ok": read.ok, "reason": read.reason,
                                "summary": self.context, "reasoning": read.reasoning,
                                "candidates": [s.candidate.id for s in shown], "prompt_hash": resp.call.prompt_hash})

    # -- helpers ----------------------------------------------------------------------------------

    def _sampler(self, result: EvaluationResult) -> PairSampler:
        """The minibatch sampler over the search suite of the first ok result: its tasks, and the search
        seeds of `strategy.search_seeds` or else the suite's `search_seeds` pool."""
        from optforge.evaluators.tasks import get_suite

        suite = get_suite(result.suite)
        pool = self.config.search_seeds or tuple(getattr(suite, "search_seeds", ()) or ())
        if not pool:
            raise ValueError(f"polca: suite '{suite.name}' has no search seeds (Suite.search_seeds) to draw minibatches "
                             "from; set strategy.search_seeds, or search a suite with a search-seed pool")
        return PairSampler([t.name for t in suite.tasks], pool, int(self.rng.integers(2**31)))

    def _new_id(self) -> str:
        """Candidate ids from the strategy's generator: ids appear in prompts, which must replay exactly."""
        return self.rng.bytes(6).hex()


def _ckey(cid: str) -> str:
    return f"c:{cid}"


def _rkey(cid: str, purpose: str, task: str, seed: int) -> str:
    return f"r:{purpose}:{cid}:{task}:{seed}"


def _entry(c: mem.Candidate, priority: float) -> dict[str, Any]:
    """A queue entry as records show it: mean +- sd over n rollouts, priority, parent."""
    scores = c.scores
    sd = statistics.stdev(scores) if len(scores) > 1 else None
    return {"id": c.id, "parent": c.parent, "mean": c.mean, "sd": sd, "n": c.n, "priority": priority}


def _score(result: EvaluationResult, task: str) -> float | None:
    """The rollout's clipped score on `task`: FLOOR for a failure, None when lost (says nothing)."""
    if result.status is Status.LOST:
        return None
    if not result.ok:
        return FLOOR
    value = ((result.metrics.get("tasks") or {}).get(task) or {}).get("score")
    if not isinstance(value, (int, float)) or value != value:
        return FLOOR
    return min(CEILING, max(FLOOR, float(value)))

