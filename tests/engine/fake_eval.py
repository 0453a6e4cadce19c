"""A real but trivial evaluate function for engine tests (no sandbox, no training).

Fitness is read from the source: a line `FITNESS = x`. Markers change behaviour: `# HANG` sleeps
forever, `# SLOW s` sleeps s seconds, `# PIDFILE path` writes the worker's pid there first, `# RAISE` raises, `# DIE` kills its own worker process, and
`# FLAKY path` kills its worker on the first call only, `# CRASH` returns a crashed result, `# DIVERGE`
a diverged one. Every call appends a line to $OPTFORGE_FAKE_LOG when set, so
tests can count the evaluations that really ran.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from optforge.evaluators import EvalRequest
from optforge.rollouts import SearchSuite
from optforge.search.base import Rollout, StrategyBase
from optforge.search.context import needs
from optforge.types import EvaluationResult, Status


def fake_source(fitness: float, *extra: str) -> str:
    return "\n".join([f"FITNESS = {fitness!r}", "LR = 1e-3", *extra, ""])


def fake_evaluate(request: EvalRequest) -> EvaluationResult:
    src = request.source
    log_path = os.environ.get("OPTFORGE_FAKE_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"{request.stage} {abs(hash(src)) % 10**8}\n")
    m = re.search(r"# PIDFILE (\S+)", src)
    if m:
        with open(m.group(1), "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
    m = re.search(r"# SLOW ([0-9.]+)", src)
    if m:
        time.sleep(float(m.group(1)))
    if "# HANG" in src:
        time.sleep(3600)
    if "# DIE" in src and os.environ.get("OPTFORGE_FAKE_DIE", "1") == "1":
        os._exit(1)
    m = re.search(r"# FLAKY (\S+)", src)  # dies the first time only (the marker file says it has)
    if m and not os.path.exists(m.group(1)):
        open(m.group(1), "w").close()
        os._exit(1)
    if "# RAISE" in src:
        raise RuntimeError("evaluator bug")
    if "# CRASH" in src:
        return EvaluationResult.failure(Status.CRASHED, "the rule raised at line 3", stage=request.stage)
    if "# DIVERGE" in src:
        return EvaluationResult.failure(Status.DIVERGED, "the loss became NaN at step 4", stage=request.stage)
    m = re.search(r"FITNESS = (-?[0-9.]+)", src)
    fit = float(m.group(1)) if m else 0.0
    if request.stage == "train_fresh_seeds":
        fit -= 0.5 if "# OVERFIT" in src else 0.0
    if request.stage == "heldout":
        fit = -1.0 if "# OVERFIT" in src else fit
    tasks = {"a": {"score": fit, "flags": [], "lr_mult": 2.0}, "b": {"score": fit, "flags": [], "lr_mult": 0.5}}
    m = re.search(r"# FP (\S+)", src)  # the smoke stage reports this as the rule's fingerprint
    artifacts = {"fingerprint": m.group(1)} if m and request.stage == "smoke" else {}
    if not isinstance(request.seeds, str):  # a rollout: its tasks and search seeds, a score per (task, seed)
        return _rollout_result(request, fit)
    # fresh seeds: d_s = fitness -0.01, 0, +0.01, ... (what the funnel's t-test reads)
    n = int(request.seeds.split(":")[1]) if str(request.seeds).startswith("fresh:") else 2
    scored = (0, 1) if request.seeds == "selection" else tuple(range(2, 2 + n))
    seed_fitness = {str(s): fit + 0.01 * (i % 3 - 1) for i, s in enumerate(scored)}
    return EvaluationResult(Status.OK, stage=request.stage, suite=request.suite, suite_version="fake-1",
                            seeds=scored,
                            metrics={"fitness": fit, "robust": fit, "tasks": tasks, "wall_seconds": 0.01,
                                     "seed_fitness": seed_fitness},
                            artifacts=artifacts, feedback="fine")


TASKS = ("a", "b")


def pair_score(fit: float, task: str, seed: int) -> float:
    """The fake score of one (task, seed) pair: the source's fitness plus a fixed spread."""
    return round(fit + 0.1 * ((seed * 7 + TASKS.index(task) * 3) % 5 - 2), 6)


def _rollout_result(request, fit: float) -> EvaluationResult:
    tasks = tuple(getattr(request, "tasks", None) or TASKS)
    seeds = tuple(request.seeds)
    per = {t: sum(pair_score(fit, t, s) for s in seeds) / len(seeds) for t in tasks}
    return EvaluationResult(Status.OK, stage=request.stage, suite=request.suite, suite_version="fake-1", seeds=seeds,
                            metrics={"fitness": sum(per.values()) / len(per), "cpu_seconds": 1.5,
                                     "tasks": {t: {"score": v, "flags": []} for t, v in per.items()}},
                            artifacts={"lr_multipliers": dict(getattr(request, "lr_multipliers", None) or {}),
                                       "detail": getattr(request, "detail", "summary")}, feedback="fine")


@dataclass(frozen=True)
class RolloutRequest:
    """EvalRequest's fields, rollout ones included, without its check of task names against the real suite:
    the fake evaluator's tasks ("a", "b") are not in any suite."""

    source: str
    stage: str
    suite: str = "train"
    seeds: Any = "selection"
    sandbox: dict = field(default_factory=dict)
    tune_wd: bool = False
    tasks: tuple | None = None
    lr_multipliers: dict | None = None
    detail: str = "summary"


SEARCH_SUITE = SearchSuite("train", TASKS, search_seeds=tuple(range(100, 116)), report_seeds=(2, 3, 4),
                           heldout_tasks=frozenset({"held_lm"}))


class MinibatchStrategy(StrategyBase):
    """Proposes `n_cands` candidates, then for each one it observed ok: a minibatch rollout (task "a",
    two named search seeds), a repeat on 2 new seeds, and a repeat on 2 more reusing the lr. Ranks by
    the accumulated mean of the rows it saw; busy() while its requests are out; done when all came back.
    `bad`: one extra rollout it may not ask for (a held-out task or a report seed); the engine's refusal
    comes back to `observe_rollout` and is kept in `refused`."""

    name = "minibatch"

    def __init__(self, ctx=None, fits=(0.1, 0.4, 0.25), slow: float = 0.0, bad: dict | None = None) -> None:
        self.ctx, self.fits, self.slow, self.bad = ctx, list(fits), slow, bad
        self.proposed, self.rolled, self.out, self.queue = 0, [], 0, []
        self.rows: dict[str, list[float]] = {}
        self.refused: list[tuple] = []
        self.busy_calls = 0

    def propose(self, n: int) -> list:
        from optforge.types import Candidate

        if self.proposed < len(self.fits):
            extra = [f"# SLOW {self.slow}"] if self.slow else []
            out = [Candidate.new(fake_source(f, *extra), id=f"m{i}", strategy=self.name)
                   for i, f in enumerate(self.fits[self.proposed:self.proposed + n], self.proposed)]
            self.proposed += len(out)
            self.out += len(out)
            return out
        for cid in sorted(self.rows):
            if cid not in self.rolled:
                self.rolled.append(cid)
                k = 2 * len(self.rolled)
                self.queue += [{"candidate_id": cid, "tasks": ["a"], "seeds": [100 + k, 101 + k]},
                               {"candidate_id": cid, "new_seeds": 2},
                               {"candidate_id": cid, "new_seeds": 2, "reuse_lr": True, "detail": "trace"}]
                if self.bad is not None and len(self.rolled) == 1:
                    self.queue.append({"candidate_id": cid, **self.bad})
        asks, self.queue = self.queue[:n], self.queue[n:]
        self.out += len(asks)
        return [Rollout(**{k: tuple(v) if isinstance(v, list) else v for k, v in a.items()}) for a in asks]

    def busy(self) -> bool:
        self.busy_calls += 1
        return self.out > 0 or bool(self.queue) or len(self.rolled) < len(self.rows)

    def observe(self, candidate, result) -> None:
        self.out -= 1
        if result.ok:
            self.rows[candidate.id] = [result.fitness]
        if self.ctx is not None:
            self.ctx.record("summary", {"candidate": candidate.id, "fitness": result.fitness}, candidate.id)

    def observe_rollout(self, rollout, result) -> None:
        self.out -= 1
        if result.ok:
            self.rows[rollout.candidate_id].append(result.fitness)
        else:
            self.refused.append([rollout.candidate_id, rollout.id, result.status.value, result.artifacts.get("refused")])

    def ranking(self) -> list[str]:
        mean = {c: sum(v) / len(v) for c, v in self.rows.items()}
        return sorted(mean, key=lambda c: (-mean[c], c))

    def done(self) -> bool:
        return (self.proposed == len(self.fits) and self.out == 0 and not self.queue
                and len(self.rolled) == len(self.rows))

    def state(self) -> dict:
        return {"proposed": self.proposed, "rolled": list(self.rolled), "out": self.out, "rows": self.rows,
                "queue": list(self.queue), "refused": [list(r) for r in self.refused]}

    def load_state(self, state: dict) -> None:
        self.proposed, self.rolled, self.out = state["proposed"], list(state["rolled"]), state["out"]
        self.rows = {k: list(v) for k, v in state["rows"].items()}
        self.queue = [dict(a) for a in state["queue"]]
        self.refused = [list(r) for r in state.get("refused", [])]


def minibatch_config(**extra):
    from optforge.config import config_from_dict

    data = {"strategy": {"name": "minibatch"}, "slots": 2, "deterministic": True, "stages": ["smoke", "train"],
            "eval_timeout_s": 30}
    data.update(extra)
    return config_from_dict(data)


def make_minibatch_engine(config, strategy, store, records=None, progress=None):
    from optforge.engine import Engine

    return Engine(config, strategy, store, fake_evaluate, make_request=RolloutRequest,
                  suite_version=lambda suite: "fake-1", progress=progress, records=records,
                  search_suite=lambda: SEARCH_SUITE)


class ListStrategy:
    """Proposes the given sources in order (ids c0, c1, ...); records what it observed."""

    name = "list"

    def __init__(self, sources: list[str], notes: list[dict] | None = None) -> None:
        self.sources, self.notes = list(sources), notes or [{} for _ in sources]
        self.i = 0
        self.seen: list[list] = []

    def propose(self, n: int) -> list:
        from optforge.types import Candidate

        out = [Candidate.new(s, id=f"c{self.i + k}", strategy="list", note=self.notes[self.i + k])
               for k, s in enumerate(self.sources[self.i : self.i + n])]
        self.i += len(out)
        return out

    def observe(self, candidate, result) -> None:
        self.seen.append([candidate.id, result.stage, result.status.value, result.fitness])

    def done(self) -> bool:
        return self.i >= len(self.sources)

    def state(self) -> dict:
        return {"i": self.i, "seen": self.seen}

    def load_state(self, state: dict) -> None:
        self.i, self.seen = int(state["i"]), [list(x) for x in state["seen"]]


class WalkStrategy:
    """A seeded random walk whose proposals depend on what it observed (so resume must be exact).

    Each proposal is `best observed fitness + noise`, with a random `# SLOW` delay so that
    evaluations complete out of proposal order. Never done; stop it with a budget.
    """

    name = "walk"

    def __init__(self, seed: int = 0, slow: float = 0.3) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.slow = slow
        self.best = 0.0
        self.count = 0
        self.observed: list[str] = []

    def propose(self, n: int) -> list:
        from optforge.types import Candidate

        out = []
        for _ in range(n):
            fit = round(self.best + float(self.rng.normal(0.0, 0.5)), 6)
            delay = round(float(self.rng.uniform(0.0, self.slow)), 3)
            out.append(Candidate.new(fake_source(fit, f"# SLOW {delay}"), id=f"w{self.count}", strategy="walk"))
            self.count += 1
        return out

    def observe(self, candidate, result) -> None:
        self.observed.append(candidate.id)
        if result.ok:
            self.best = max(self.best, result.fitness)

    def done(self) -> bool:
        return False

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "best": self.best, "count": self.count,
                "observed": list(self.observed)}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.best, self.count, self.observed = float(state["best"]), int(state["count"]), list(state["observed"])


def walk_config(run_budget: int, slots: int = 2, **extra):
    from optforge.config import config_from_dict

    data = {"strategy": {"name": "walk"}, "slots": slots, "deterministic": True, "stages": ["smoke", "train"],
            "budget": {"max_candidates": run_budget}, "eval_timeout_s": 30}
    data.update(extra)
    return config_from_dict(data)


def make_engine(config, strategy, store, progress=None):
    from optforge.engine import Engine

    return Engine(config, strategy, store, fake_evaluate, make_request=EvalRequest,
                  suite_version=lambda suite: "fake-1", progress=progress)


def warm_worker() -> int:
    """Import torch in a Ray worker and hold the CPU briefly, so both workers start."""
    import torch

    time.sleep(0.5)
    return torch.get_num_threads()


BROKEN_RULE = '''LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    return -ctx.lr * state["m"]
'''
"""A rule that loads but raises KeyError on its first step: crashed, with the reason in the result."""


def broken_start(params, ctx):
    """Strategy factory (`strategy: {name: "fake_eval:broken_start"}`): a warm start that crashes,
    then a healthy candidate the run must never get to evaluate."""
    from optforge import seeds

    return ListStrategy([BROKEN_RULE, seeds.source("adamw")], notes=[{"warm_start": True, "seed": "broken"}, {}])


class AsksLLM(ListStrategy):
    """Asks the LLM for each proposal (and proposes its answer); `observe` raises on `# BUG`."""

    name = "asks_llm"

    def __init__(self, llm) -> None:
        super().__init__([])
        self.llm = llm

    def propose(self, n: int) -> list:
        from optforge.types import Candidate

        answer = self.llm.complete("propose an update rule").text
        self.i += 1
        return [Candidate.new(answer, id=f"c{self.i - 1}", strategy=self.name)]

    def done(self) -> bool:
        return False


@needs("llm")
def asks_llm(params, ctx):
    """Strategy factory (`strategy: {name: "fake_eval:asks_llm"}`): every proposal is an LLM call."""
    return AsksLLM(ctx.llm)


class RaisesInObserve(ListStrategy):
    name = "raises_in_observe"

    def observe(self, candidate, result) -> None:
        raise ValueError(f"observe broke on {candidate.id}")


def raises_in_observe(params, ctx):
    """Strategy factory: one healthy candidate whose observation raises (a strategy bug)."""
    return RaisesInObserve([fake_source(0.1)])
