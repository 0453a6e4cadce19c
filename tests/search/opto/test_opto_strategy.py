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
    kept = ctx.records.take()
    records = [(r.kind, r.candidate_id, r.data.get("reason")) for r in kept if r.kind != "step"]
    assert records == [("best_chain", seed.id, None), ("best_chain", beta.id, None),
                       ("chain_ended", None, "TERMINATE: the model suggested no change")]
    # a `step` record per answer: what changed, and the feedback it answered with the tasks' real names
    steps = [(r.candidate_id, r.data["step"], r.data["outcome"], r.data["change"]) for r in kept if r.kind == "step"]
    assert steps == [(beta.id, 1, "update", "constant BETA2 0.999 \u2192 0.995"),
                     (bad.id, 2, "invalid", "invalid: " + bad.note["reason"]), (None, 3, "no_change", "TERMINATE: no change")]
    first = next(r.data for r in kept if r.kind == "step")
    assert first["parent"] == seed.id and "step 47" in first["feedback"]
    assert sorted(first["tasks"].values()) == ["char_lm", "small_cnn", "tiny_mlp"]
    assert sorted(first["tasks"]) == ["task 1", "task 2", "task 3"]


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


def _prompt_of(call) -> str:
    return "\n".join(m["content"] for m in json.loads(call.prompt))


def _feedback(prompt: str) -> str:
    return prompt.rsplit("#Feedback", 1)[1]  # the last one: the system message names the sections too


def test_a_lost_oracle_rollout_is_feedback_and_the_step_goes_on(llm_for, make_result):
    """A rollout that gives no result (lost here; crashed or timed out alike) is neither dropped nor the
    end of the step: its failure text opens #Feedback, above the candidate's own result."""
    calls = []
    llm, server = llm_for([{"match": r"status lost: The evaluation was lost", "content": suggestion({"BETA2": 0.99})}],
                          recorder=calls.append)
    st = from_config({"split_constants": True, "max_steps": 1}, StrategyContext.of(seed=2, llm=llm))
    (seed,) = st.propose(1)
    st.observe(seed, ok(make_result, fitness=-0.3))
    (roll,) = st.propose(1)
    assert isinstance(roll, Rollout) and roll.detail == "trace" and st.busy()
    lost = EvaluationResult.failure(Status.LOST, "The evaluation was lost to an infrastructure failure (not the "
                                    "rule's fault) (reason: worker died).", stage="train")
    st.observe_rollout(roll, lost)
    (child,) = st.propose(1)
    assert server.served == 1 and child.parents == (seed.id,) and "status" not in child.note
    feedback = _feedback(_prompt_of(calls[-1]))
    assert feedback.index("status lost: The evaluation was lost") < feedback.index("Fitness -0.300 over 3 task(s)")
    assert "The sections show their own train evaluation instead." in feedback
    # the failure belongs to those variables only: the child's own oracle starts clean
    st.observe(child, ok(make_result, fitness=-0.1))
    assert st.chains[0].trace_failure == "" and st.chains[0].phase == "ended"


def test_a_crashed_candidate_is_its_own_oracle_and_its_failure_text_the_next_feedback(llm_for, make_result, crashed):
    calls = []
    script = [{"match": r"Fitness -1\.113", "content": suggestion({"BETA2": 0.9})},
              {"match": r"The rule raised an error.*RuntimeError: The size of tensor a", "content": "TERMINATE"}]
    llm, server = llm_for(script, recorder=calls.append)
    st = from_config({"split_constants": True}, StrategyContext.of(seed=4, llm=llm))
    proposals, _ = drive(st, lambda c: ok(make_result, fitness=-0.3) if not c.parents else crashed, make_result())
    seed, roll, child = proposals
    assert isinstance(roll, Rollout) and roll.candidate_id == seed.id  # a crashed candidate is never rolled out
    assert server.served == 2 and st.chains[0].end_reason.startswith("TERMINATE")
    assert "RuntimeError: The size of tensor a (3)" in _feedback(_prompt_of(calls[-1]))


def test_a_minibatch_oracle_rolls_out_on_tasks_drawn_by_the_chain(llm_for, make_result):
    calls = []
    llm, server = llm_for([suggestion({"BETA2": 0.99})], recorder=calls.append)

    def first_rollout(params, seed=7):
        st = from_config(params, StrategyContext.of(seed=seed, llm=llm))
        (cand,) = st.propose(1)
        st.observe(cand, ok(make_result))
        (roll,) = st.propose(1)
        return st, roll

    st, roll = first_rollout({"minibatch": 2})
    assert roll.detail == "trace" and roll.new_seeds == 1 and len(roll.tasks) == 2
    assert set(roll.tasks) < {"tiny_mlp", "small_cnn", "char_lm"} and list(roll.tasks) == sorted(roll.tasks)
    assert first_rollout({"minibatch": 2})[1].tasks == roll.tasks  # the chain's RNG: the same draw again
    assert first_rollout({"minibatch": 3})[1].tasks is None  # all of them: no subset
    assert first_rollout({"minibatch": 1, "detail": "summary"})[1].detail == "summary"
    # the oracle is the rollout's result: #Outputs shows the minibatch's tasks only
    full = make_result()
    mini = EvaluationResult(Status.OK, stage="train", metrics={"fitness": -0.2, "tasks": {
        t: full.metrics["tasks"][t] for t in roll.tasks}}, feedback="Status ok.")
    st.observe_rollout(roll, mini)
    st.propose(1)
    outputs = _prompt_of(calls[-1]).rsplit("#Outputs", 1)[1].split("#Feedback", 1)[0]
    assert outputs.count("(task) task") == 2 and "over 2 task(s)" in _feedback(_prompt_of(calls[-1]))
