"""The POLCA strategy driven in order (a stand-in for the engine's deterministic mode) against the
scripted LLM server and the real sandbox probe: the iteration's steps, the epsilon-net's records, the
summarizer, the budget, and exact resume from a state taken mid-iteration."""

import contextlib
import json

import pytest

from optforge import seeds
from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer
from optforge.search.base import Rollout
from optforge.search.context import StrategyContext
from optforge.search.polca import PolcaStrategy, from_config
from optforge.search.registry import build_strategy
from optforge.types import Candidate, EvaluationResult, Status

ADAMW = seeds.source("adamw")
GOOD = ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.95")  # a real change: its probe updates differ
REFORMATTED = ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.999  # unchanged")  # the same rule: distance 0
SEEDS = (0, 1)  # the smoke suite has no search-seed pool: these stand in (strategy.search_seeds)
PARAMS = {"warm_start": ["adamw"], "num_candidates": 2, "batch_size": 2, "num_proposals": 2,
          "search_seeds": list(SEEDS), "summary_candidates": 3}


def fence(src: str) -> str:
    return f"<reasoning>try this</reasoning>\n```python\n{src}```\n"


SUMMARY = {"match": "^Analyse", "content": "<reasoning>r</reasoning>\n<summary>lower beta2 helps</summary>",
           "repeat": True}
SCRIPT = [SUMMARY, fence(GOOD), fence(REFORMATTED), "no code here", fence(GOOD.replace("WD = 0.01", "WD = 0.03"))]


def score_of(source: str, task: str, seed: int) -> float:
    """A deterministic stand-in for the evaluator: lower BETA2 scores higher; the (task, seed) adds noise."""
    base = 0.4 if "BETA2 = 0.95" in source else 0.0
    return base + (sum(map(ord, task)) % 5) / 50 + seed / 100


def result(source: str, tasks: dict[str, float], stage: str = "train") -> EvaluationResult:
    fit = sum(tasks.values()) / len(tasks)
    return EvaluationResult(Status.OK, stage=stage, suite="smoke", metrics={
        "fitness": fit, "tasks": {t: {"score": s, "lr_mult": 1.0} for t, s in tasks.items()}},
        feedback=f"score {fit:+.3f}")


def drive(st: PolcaStrategy, rounds: int, sources: dict[str, str], log: list) -> None:
    """Propose and observe in order; `sources` maps candidate ids to their sources."""
    for _ in range(rounds):
        if st.done():
            return
        for p in st.propose(3):
            log.append(p)
            if isinstance(p, Candidate):
                sources[p.id] = p.source
                if p.note.get("status") == "invalid":
                    continue
                st.observe(p, result(p.source, {"smoke_quad": score_of(p.source, "smoke_quad", 0)}))
            else:
                assert isinstance(p, Rollout) and len(p.tasks) == 1 and len(p.seeds) == 1
                (task,), (seed,) = p.tasks, p.seeds
                st.observe_rollout(p, result(sources[p.candidate_id], {task: score_of(sources[p.candidate_id], task, seed)}))


@pytest.fixture
def llm_for():
    stack = contextlib.ExitStack()

    def make(script, budget=None):
        server = stack.enter_context(ScriptedServer(script))
        cfg = {"model": "openai/scripted", "api_base": server.url, "api_key_env": None, "backoff_s": 0.0,
               "concurrency": 1, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
        return LLMClient({"llm": cfg, "budget": budget or {}}), server

    with stack:
        yield make


def build(llm, seed=3, **params):
    ctx = StrategyContext.of(seed=seed, llm=llm)
    return from_config({**PARAMS, **params}, ctx), ctx


def test_one_iteration_rolls_proposes_filters_validates_and_summarizes(llm_for):
    llm, server = llm_for(SCRIPT)
    st, ctx = build(llm, max_iterations=1)
    log, sources = [], {}
    drive(st, 40, sources, log)
    assert st.done() and st.stop_reason == "max_iterations (1) reached"
    seed = log[0]
    assert isinstance(seed, Candidate) and seed.note["warm_start"] and seed.source == ADAMW
    explore = [p for p in log if isinstance(p, Rollout) and p.note["purpose"] == "explore"]
    assert [p.candidate_id for p in explore] == [seed.id] * 2  # the seed, on a minibatch of 2 pairs
    assert sorted((p.tasks[0], p.seeds[0]) for p in explore) == sorted(st.sampler.order(0)[:2])
    children = [p for p in log if isinstance(p, Candidate) and p is not seed]
    # 2 proposals for (seed, minibatch): GOOD and the reformatted copy, which the net rejects unevaluated
    assert [c.source for c in children] == [GOOD]
    records = ctx.records.take()
    rejected = [r for r in records if r.kind == "epsilon_rejection"]
    assert len(rejected) == 1 and rejected[0].data["distance"] == pytest.approx(0.0, abs=1e-12)
    assert rejected[0].data["nearest"] == seed.id and rejected[0].data["source"] == REFORMATTED
    validate = [p for p in log if isinstance(p, Rollout) and p.note["purpose"] == "validate"]
    assert {(p.tasks[0], p.seeds[0]) for p in validate} == {(p.tasks[0], p.seeds[0]) for p in explore}
    assert all(p.candidate_id == children[0].id for p in validate)
    # pushed back: the child ranks first (higher mean), both with their 2 rollouts
    top = st.memory.ranked(st.iteration)
    assert [c.id for c in top] == [children[0].id, seed.id] and [c.n for c in top] == [2, 2]
    assert st.best() is None  # the exploit pick needs min_rollouts (4) rollouts: a mean of 2 is noise
    st.memory.min_rollouts = 2
    assert st.best().id == children[0].id
    queue = [r.data for r in records if r.kind == "queue"]
    assert [[(e["id"], e["n"]) for e in q["top"]] for q in queue] == [[(children[0].id, 2), (seed.id, 2)]]
    assert queue[0]["top"][0]["sd"] >= 0 and queue[0]["rejected_so_far"] == 1
    summary = [r for r in records if r.kind == "summary"]
    assert len(summary) == 1 and summary[0].data["ok"] and st.context == "lower beta2 helps"
    assert server.served == 3  # 2 proposals + 1 summary


def test_the_llm_budget_counts_every_call_and_stops_without_overshoot(llm_for):
    llm, server = llm_for(SCRIPT, budget={"max_llm_calls": 4})
    st, _ = build(llm)
    log, sources = [], {}
    drive(st, 80, sources, log)
    assert st.done() and "LLM budget exhausted" in st.stop_reason
    assert server.served == 4 and llm.budget.calls_made == 4  # proposals and summaries alike


def test_text_without_an_embedding_model_is_refused(llm_for):
    llm, _ = llm_for(SCRIPT)
    with pytest.raises(ValueError, match="embedding=text needs llm.embedding_model"):
        build_strategy("polca", {**PARAMS, "embedding": "text"}, StrategyContext.of(llm=llm))


def test_resume_from_a_state_taken_mid_iteration_continues_exactly(llm_for):
    answers = [fence(GOOD.replace("WD = 0.01", f"WD = 0.0{k}")) for k in range(2, 9)]
    llm, _ = llm_for([SUMMARY] + answers)
    st, _ = build(llm, max_iterations=3)
    log, sources = [], {}
    drive(st, 5, sources, log)  # part way: some proposals handed out, results of others still to come
    saved = json.loads(json.dumps(st.state()))
    later_sources = dict(sources)
    st2, _ = build(llm, seed=99, max_iterations=3)  # another seed: everything must come from the state
    st2.load_state(saved)
    rest_a, rest_b = [], []
    drive(st, 60, dict(sources), rest_a)
    assert st.done()
    # a fresh server holding the answers the first run had not used yet when the state was taken
    st2.llm, _ = llm_for([SUMMARY] + answers[saved["proposals"]:])
    drive(st2, 60, later_sources, rest_b)
    assert [_key(p) for p in rest_b] == [_key(p) for p in rest_a]
    assert st2.state()["memory"] == st.state()["memory"] and st2.rng.bit_generator.state == st.rng.bit_generator.state


def _key(p):
    if isinstance(p, Candidate):
        return ("c", p.id, p.source, p.parents)
    return ("r", p.candidate_id, p.tasks, p.seeds, p.note["purpose"])
