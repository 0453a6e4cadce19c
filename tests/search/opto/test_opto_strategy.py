"""The opto strategy driven step by step with a real LLM client against the scripted server (match-keyed
entries), in the engine's deterministic order: seed -> trace rollout -> OptoPrime step -> candidate."""

from __future__ import annotations

import contextlib
import json

import pytest

from optforge import seeds
from optforge.llm import LLMClient
from optforge.llm.scripted import ScriptedServer
from optforge.search.base import Rollout
from optforge.search.context import StrategyContext
from optforge.search.opto import OptoStrategy, from_config
from optforge.search.registry import build_strategy
from optforge.store import Store
from optforge.types import Candidate, EvaluationResult, Status

ADAMW = seeds.source("adamw")


def suggestion(values: dict) -> str:
    return "Reasoning: the second moment is too slow.\n```json\n" + json.dumps(
        {"reasoning": "slow v", "answer": "", "suggestion": values}) + "\n```\n"


@pytest.fixture
def llm_for():
    stack = contextlib.ExitStack()

    def make(script, recorder=None, **settings):
        server = stack.enter_context(ScriptedServer(script))
        cfg = {"model": "openai/scripted", "api_base": server.url, "api_key_env": None, "backoff_s": 0.0,
               "concurrency": 1, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, **settings}
        return LLMClient({"llm": cfg}, recorder=recorder), server

    with stack:
        yield make


def ok(result_of, fitness=-0.2, stage="train"):
    r = result_of(trace=False)
    return EvaluationResult(Status.OK, stage=stage, metrics={**r.metrics, "fitness": fitness}, feedback="Status ok.")


def drive(st: OptoStrategy, results, traced) -> tuple[list, list]:
    """Propose one at a time and answer each proposal at once, as deterministic mode does: a candidate
    gets `results(candidate)`, a trace rollout gets `traced` (a result with a trace)."""
    proposals, answers = [], []
    for _ in range(30):
        batch = st.propose(1 if st.config.chains == 1 else 2)
        if not batch and not st.busy():
            break
        for p in batch:
            proposals.append(p)
            if isinstance(p, Rollout):
                st.observe_rollout(p, traced)
            elif p.note.get("status") == "invalid":
                st.observe(p, EvaluationResult.failure(Status.INVALID, p.note["reason"], stage="smoke"))
            else:
                r = results(p)
                answers.append(r)
                st.observe(p, r)
    return proposals, answers


def test_a_diverged_role_reaches_the_next_prompt_and_a_constant_change_is_the_lineage(llm_for, tmp_path, make_result):
    traced = make_result()  # the fixed trace: task 1's diverged run first went non-finite at step 47, role conv
    script = [
        {"match": r"step 47.*role conv|role conv.*step 47", "content": suggestion({"BETA2": 0.995})},
        {"match": r"could not be used", "content": "TERMINATE"},
        {"content": "I would rather not say."},  # no suggestion at all: invalid
    ]
    store = Store(tmp_path / "run")
    llm, server = llm_for(script, recorder=store.record_llm_call)
    ctx = StrategyContext.of(seed=3, llm=llm)
    st = build_strategy("opto", {"split_constants": True, "memory_size": 3}, ctx)
    results = {}

    def result_of(c):
        return results.setdefault(c.id, ok(make_result, fitness=-0.5 if not c.parents else -0.1))

    proposals, _ = drive(st, result_of, traced)
    assert server.served == 3
    seed, roll1, beta, roll2, bad = proposals
    assert seed.note["warm_start"] and isinstance(roll1, Rollout) and roll1.detail == "trace"
    assert beta.source == ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.995")
    assert beta.parents == (seed.id,)
    assert beta.note["change"] == {"code_changed": False, "constants": [{"name": "BETA2", "old": 0.999, "new": 0.995}]}
    assert beta.note["lineage"] == "constant BETA2 0.999 \u2192 0.995"
    assert bad.note["status"] == "invalid" and bad.note["reason"].startswith("no suggestion in the answer")
    assert st.done() and st.chains[0].end_reason.startswith("TERMINATE")
    calls = store.llm_calls()
    first, _, third = ["\n".join(m["content"] for m in json.loads(c["prompt"])) for c in calls]
    assert "step 47" in first and "role conv" in first
    # the invalid answer's reason is fed back once, with the unchanged variables' own feedback
    assert "could not be used" in third and "no suggestion in the answer" in third
    assert third.count("could not be used") == 1
    # the memory shows the earlier steps' (variables, feedback), oldest first
    assert "feedbacks you received in the past" in third and '"BETA2": 0.995' in third
    state = st.state()
    assert state["best"]["candidate"] == beta.id and state["best"]["chain"] == 0
    # `optforge show --records` lists each new best chain and why a chain ended
    records = [(r.kind, r.candidate_id, r.data.get("reason")) for r in ctx.records.take()]
    assert records == [("best_chain", seed.id, None), ("best_chain", beta.id, None),
                       ("chain_ended", None, "TERMINATE: the model suggested no change")]


def test_state_round_trips_exactly_and_the_resumed_strategy_continues_the_same(llm_for, make_result):
    traced = make_result()
    answers = [suggestion({"BETA2": 0.99 - k / 100}) for k in range(6)]
    llm, _ = llm_for(answers)
    a = from_config({"split_constants": True, "chains": 2, "max_steps": 2}, StrategyContext.of(seed=5, llm=llm))
    a.propose(2)  # the seed
    seed_id = a.chains[0].cid
    a.observe(Candidate(seed_id, ADAMW), ok(make_result))
    saved = json.loads(json.dumps(a.state()))
    b = from_config({"split_constants": True, "chains": 2, "max_steps": 2}, StrategyContext.of(seed=99, llm=llm))
    b.load_state(saved)
    assert b.state() == saved
    pa, pb = a.propose(2), b.propose(2)
    assert [p.candidate_id for p in pa] == [p.candidate_id for p in pb] == [seed_id]
    a.observe_rollout(pa[0], traced)
    b.observe_rollout(pb[0], traced)
    ca = a.propose(2)
    assert len(ca) == 2 and {c.parents for c in ca} == {(seed_id,)}
    assert len({c.id for c in ca}) == 2  # chains draw ids from their own generators


def test_held_out_results_never_reach_a_chain(llm_for, make_result):
    llm, server = llm_for([])
    st = from_config({}, StrategyContext.of(seed=0, llm=llm))
    seed = st.propose(1)[0]
    st.observe(seed, ok(make_result, stage="heldout"))
    assert st.chains[0].phase == "evaluating" and st.chains[0].oracle is None and not st.chains[0].best
    assert server.served == 0


@pytest.mark.parametrize("name", ["opto", "opto_masked"])
def test_shipped_configs_build_the_strategy(name, llm_for):
    from pathlib import Path

    from optforge.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[3] / "configs" / f"{name}.yaml")
    llm, _ = llm_for([])
    st = build_strategy(cfg.strategy_name, cfg.strategy_params, StrategyContext.of(seed=0, llm=llm))
    assert isinstance(st, OptoStrategy) and st.config.chains == 2
    shown = [s for s in ("Code", "Documentation", "Inputs", "Others", "Outputs") if st.config.shows(s)]
    assert shown == (["Outputs"] if name == "opto_masked" else ["Code", "Documentation", "Inputs", "Others", "Outputs"])


def test_a_truncated_answer_is_invalid_fed_back_once_and_a_second_unusable_one_ends_the_chain(llm_for, make_result):
    script = [{"content": suggestion({"BETA2": 0.9}), "finish_reason": "length"},
              {"match": r"truncated answer", "content": "```json\n{\"suggestion\": {\"GAMMA\": 1}}\n```"},
              {"content": suggestion({"BETA2": 0.95}), "repeat": True}]  # never reached: nothing loops
    store_calls = []
    llm, server = llm_for(script, recorder=store_calls.append, max_tokens=64)
    st = from_config({"split_constants": True, "detail": "summary"}, StrategyContext.of(seed=1, llm=llm))
    proposals, _ = drive(st, lambda c: ok(make_result), make_result())
    seed, cut, unknown = proposals
    assert cut.note["status"] == "invalid" and "llm.max_tokens=64" in cut.note["reason"]
    assert unknown.note["status"] == "invalid" and "unknown variable(s) 'GAMMA'" in unknown.note["reason"]
    assert server.served == 2 and st.done() and st.chains[0].end_reason == "two unusable answers in a row"
    # the client records each call when it goes out and when it is answered: the last is the second call
    second = "\n".join(m["content"] for m in json.loads(store_calls[-1].prompt))
    assert second.count("truncated answer") == 1 and "(no trace: this evaluation was run at summary detail)" in second
