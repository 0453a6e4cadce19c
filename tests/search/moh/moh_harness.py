"""A MoH run through the real engine, store, Ray, procedure sandbox and scripted LLM server, with the
engine's fake evaluator (tests/engine/fake_eval.py: a rule's fitness is its `FITNESS = x` line, a
rollout's is a fixed spread around it per (task, seed)), on its search suite: tasks a and b, search
seeds 100-115, held-out task held_lm. Used by the tests here and by the kill-and-resume driver."""

from __future__ import annotations

import json
from typing import Any

import fake_eval

from optforge.config import config_from_dict
from optforge.llm import LLMClient
from optforge.search.context import StrategyContext
from optforge.search.registry import build_strategy
from optforge.store import Store

COSTS = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
PARAMS = {"subtasks": {"a": ["a"], "b": ["b"]}, "weights": {"a": 1.0, "b": 3.0}, "n_iterations": 2, "pop_size": 4,
          "max_evals_per_subtask": 2, "llm_calls_per_run": 4, "search_seeds": [100], "cpu_s": 20.0, "wall_s": 60.0}


def rule(fitness: float, *extra: str) -> str:
    return fake_eval.fake_source(fitness, *extra)


def fence(source: str) -> str:
    return f"Here it is.\n```python\n{source}```\n"


NEW_PROCEDURE = '''"""Asks once for one rule and keeps it if it is better."""

import re

FENCE = "`" * 3  # not written out: this module is itself sent inside a fence


def improve(population, utility, llm, task):
    best = population.get(0)
    answer = llm.prompt("You write code.", task + "\\nWrite one solution. ONE-SHOT", 0.5)
    found = re.findall(FENCE + "python\\n(.*?)" + FENCE, answer, re.S)
    if not found:
        return best
    fitness = utility(found[0], task)
    if fitness > best["utility"]:
        return {"source": found[0], "idea": "one shot"}
    return best
'''


def script(slow: str = "", rules: dict[float, str] | None = None, subtasks: str = "[ab]") -> list[dict[str, Any]]:
    """Answers keyed by what the prompt shows; `repeat` entries are never used up. `slow`: a marker
    line the fake evaluator sleeps on, added to the rules written at the rule level. `rules`: the
    rule written for each fake fitness (0.2, 0.3, 0.5, 0.9), for a real evaluator; `subtasks`: a
    regex of the subtask names."""
    extra = (slow,) if slow else ()
    make = rules.__getitem__ if rules is not None else rule
    rule_level = rf"^subtask: {subtasks}\n[\s\S]*"
    meta_level = r"^subtask: procedures\n[\s\S]*"
    return [  # each pattern ends where the seed procedure's message ends (\Z): a prompt quoting code quotes more
        {"match": meta_level + r"this idea: [^\n]*\Z", "content": fence(NEW_PROCEDURE), "repeat": True},
        {"match": meta_level + r"ONE-SHOT\Z", "content": fence(NEW_PROCEDURE), "repeat": True},
        {"match": r"one-sentence strings\.\Z", "content": '["scale the step by the gradient noise", "add momentum"]',
         "repeat": True},
        {"match": rule_level + r"gradient noise\Z", "content": fence(make(0.3, *extra)), "repeat": True},
        {"match": rule_level + r"add momentum\Z", "content": fence(make(0.2, *extra)), "repeat": True},
        {"match": rule_level + r"before the code\.\Z", "content": "Use a larger step.\n" + fence(make(0.5, *extra)),
         "repeat": True},
        {"match": rule_level + r"ONE-SHOT\Z", "content": fence(make(0.9, *extra)), "repeat": True},
    ]


def config(params: dict[str, Any] | None = None, **extra: Any):
    data = {"strategy": {"name": "moh", **PARAMS, **(params or {})}, "slots": 2, "deterministic": True,
            "stages": ["smoke", "train"], "eval_timeout_s": 600, "budget": {"max_llm_calls": 200}}
    data.update(extra)
    return config_from_dict(data)


def run_moh(run_dir, llm_settings: dict[str, Any], params: dict[str, Any] | None = None, *, budget: dict | None = None,
            smoke: bool = False):
    """Run (or resume) MoH in `run_dir`; returns (store, strategy). `smoke`: the real evaluator on the
    `smoke` suite (its selection seeds stand in for the search-seed pool it lacks), else the fake one."""
    extra: dict[str, Any] = {"budget": budget} if budget else {}
    if smoke:
        extra.update(suite="smoke", baselines_check="off")
    cfg = config(params, **extra)
    store = Store(run_dir)
    dollars, calls = store.llm_spend()
    from optforge.llm.budget import Budget

    llm = LLMClient({"model": "openai/scripted", "api_key_env": None, "concurrency": 1, "backoff_s": 0.0,
                     "max_retries": 0, **COSTS, **llm_settings}, recorder=store.record_llm_call,
                    budget=Budget(cfg.budget.max_dollars, cfg.budget.max_llm_calls, dollars, calls))
    ctx = StrategyContext(seed=0, llm_client=llm)
    strategy = build_strategy("moh", cfg.strategy_params, ctx)
    try:
        if smoke:
            _smoke_engine(cfg, strategy, store, ctx.records).run()
        else:
            fake_eval.make_minibatch_engine(cfg, strategy, store, records=ctx.records).run()
    finally:
        strategy.close()
    return store, strategy


def _smoke_engine(cfg, strategy, store, records):
    from optforge.commands.run import _request_factory, _suite_version
    from optforge.engine import Engine
    from optforge.evaluators import evaluate
    from optforge.evaluators.tasks import get_suite
    from optforge.rollouts import SearchSuite

    smoke = get_suite("smoke")
    suite = SearchSuite("smoke", tuple(t.name for t in smoke.tasks), tuple(smoke.selection_seeds),
                        tuple(smoke.report_seeds))
    return Engine(cfg, strategy, store, evaluate, make_request=_request_factory(cfg), suite_version=_suite_version,
                  search_suite=lambda: suite, records=records)


def outcome(store: Store) -> dict[str, Any]:
    """What a replay must reproduce: candidates, rollouts, rows, records (minus measured CPU seconds)."""
    def clean(data):
        return {k: v for k, v in data.items() if k != "cpu_s"}

    return {"candidates": [(c.id, c.source, c.parents, json.dumps(c.note, sort_keys=True))
                           for c in store.candidates(include_reference=False)],
            "rollouts": [(r.candidate_id, r.tasks, r.seeds, json.dumps(r.note, sort_keys=True)) for r in store.rollouts()],
            "rows": sorted((e.candidate_id, e.stage, e.rollout_id or 0, e.fitness) for e in store.evaluations()),
            "records": [(r.kind, json.dumps(clean(r.data), sort_keys=True)) for r in store.records()],
            "prompts": [c["prompt_hash"] for c in store.llm_calls()]}


SLOW = "# SLOW 1.0"
RESUME_PARAMS = {"n_iterations": 1}
"""The kill-and-resume runs: one outer iteration; the rules written at the rule level are slow to
evaluate (`script(SLOW)`), so a kill lands while an inner run waits on one."""
