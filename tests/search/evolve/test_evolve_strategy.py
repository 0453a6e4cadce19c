from optforge.search.context import StrategyContext
"""The evolve strategy against the scripted LLM server: proposals, failures, feedback, dedup, resume."""

import json

import pytest

from optforge.search.evolve import from_config
from optforge.types import EvaluationResult, Status


def _user(server, i=-1):
    return server.requests[i]["messages"][1]["content"]


def test_seeds_first_then_llm_children(llm_for, evo):
    llm, server = llm_for([evo.fence(evo.GOOD)])
    st = from_config({"warm_start": ["adamw", "lion"], "islands": 2}, StrategyContext.of(seed=0, llm=llm))
    first = st.propose(4)
    assert [c.note["seed"] for c in first] == ["adamw", "lion"]
    assert server.served == 0  # nothing to evolve from until a seed has a result
    assert st.propose(2) == [] and not st.done()
    st.observe(first[0], evo.ok_result({"mlp_a": 0.0, "cnn_b": 0.0}))
    child = st.propose(1)
    assert len(child) == 1 and server.served == 1
    c = child[0]
    assert c.parents == (first[0].id,) and c.source.strip() == evo.GOOD.strip()
    assert c.note["model"] == "openai/scripted" and "status" not in c.note
    assert c.note["dollars"] > 0
    # the prompt shows the contract, the parent source and its per-task results
    system = server.requests[0]["messages"][0]["content"]
    assert "def update(p, g, state, ctx)" in system and "ctx.grad_norm" in system
    user = _user(server)
    assert "BETA2 = 0.999" in user and "- mlp_a (mlp): score +0.000" in user


def test_failures_become_invalid_candidates_whose_reasons_reach_the_next_prompt(llm_for, evo):
    script = [
        evo.diff("BETA7 = 3", "BETA7 = 4"),                                   # broken diff
        evo.fence(evo.ADAMW.replace("def update(p, g, state, ctx):", "def update(p, g, state, ctx)")),  # syntax error
        {"fault": "empty"},                                               # empty completion
        "I would use Adam.",                                              # no code
        evo.fence(evo.ADAMW.replace("# ", "#  ").replace("m, v = ", "m,  v = ")),  # same rule, reformatted
        evo.fence(evo.GOOD),
    ]
    llm, server = llm_for(script)
    st = from_config({"warm_start": ["adamw"], "islands": 1, "edit": "diff", "failures_in_prompt": 5}, StrategyContext.of(seed=1, llm=llm))
    seed = st.propose(1)[0]
    st.observe(seed, evo.ok_result({"mlp_a": 0.0}))
    cands = st.propose(5)
    reasons = [c.note.get("reason", "") for c in cands]
    assert [c.note.get("status") for c in cands] == ["invalid"] * 5
    assert reasons[0].startswith("failed diff")
    assert "syntax error" in reasons[1]
    assert reasons[2].startswith("empty completion")
    assert "no code block" in reasons[3]
    assert reasons[4].startswith(f"duplicate of candidate {seed.id}")
    for c in cands:  # the engine stores them and hands back the invalid result
        st.observe(c, EvaluationResult.failure(Status.INVALID, c.note["reason"], stage="smoke"))
    nxt = st.propose(1)
    assert "status" not in nxt[0].note
    prompt = _user(server)
    assert "failed diff" in prompt and "empty completion" in prompt and "duplicate of candidate" in prompt


def test_evaluation_failures_and_exceptions_are_fed_back(llm_for, evo):
    llm, server = llm_for([evo.fence(evo.GOOD), evo.fence(evo.GOOD.replace("EPS = 1e-8", "EPS = 1e-6"))])
    st = from_config({"warm_start": ["adamw"], "islands": 1}, StrategyContext.of(seed=2, llm=llm))
    seed = st.propose(1)[0]
    st.observe(seed, evo.ok_result({"mlp_a": 0.1}))
    child = st.propose(1)[0]
    bad = EvaluationResult.failure(Status.DIVERGED, "diverged at step 40 on mlp_a; loss exploded", stage="smoke",
                                   exception="line 30: FloatingPointError")
    st.observe(child, bad)
    assert st.pop.programs[child.id].fitness == -3.0
    st.propose(1)
    assert "diverged at step 40 on mlp_a" in _user(server)


def test_held_out_results_never_reach_the_strategy(llm_for, evo):
    llm, _ = llm_for([])
    st = from_config({"warm_start": ["adamw"]}, StrategyContext.of(seed=0, llm=llm))
    seed = st.propose(1)[0]
    st.observe(seed, evo.ok_result({"mlp_a": 1.5}, stage="heldout"))
    assert st.pop.programs[seed.id].status == "pending" and st.best() is None


def test_references_show_seeds_that_beat_the_parent_where_it_lags(llm_for, evo):
    llm, server = llm_for([evo.fence(evo.GOOD)])
    st = from_config({"warm_start": ["adamw", "lion", "sgd"], "islands": 1, "references": 1,
                      "selection_sharpness": 50.0}, StrategyContext.of(seed=3, llm=llm))
    a, lion, sgd = st.propose(3)
    st.observe(a, evo.ok_result({"mlp_a": 0.5, "cnn_b": -1.0}))
    st.observe(lion, evo.ok_result({"mlp_a": -2.0, "cnn_b": 0.4}))   # beats adamw on its lagging task
    st.observe(sgd, evo.ok_result({"mlp_a": -2.5, "cnn_b": -0.5}))   # also better there, but less so
    st.propose(1)
    prompt = _user(server)
    parent = "adamw" if "# Parent rule (adamw)" in prompt else "lion"
    assert parent == "adamw"  # fitness -0.25 vs -0.8 / -1.5 with a sharp selection
    refs = prompt.split("## Reference rules")[1].split("## Other programs")[0]
    assert "### lion (scores on those tasks: cnn_b +0.400)" in refs and "### sgd" not in refs


def test_budget_exhaustion_stops_cleanly(llm_for, evo):
    llm, server = llm_for({"responses": [evo.fence(evo.GOOD)], "cycle": True}, budget={"max_llm_calls": 2})
    st = from_config({"warm_start": ["adamw"], "islands": 1}, StrategyContext.of(seed=0, llm=llm))
    seed = st.propose(1)[0]
    st.observe(seed, evo.ok_result({"mlp_a": 0.0}))
    cands = st.propose(4)
    assert server.served == 2 and len(cands) == 2  # the 2nd is a duplicate of the 1st, but was asked
    assert st.done() and st.propose(3) == []


def test_unknown_key_and_missing_llm():
    with pytest.raises(ValueError, match="islandz"):
        from_config({"islandz": 3}, StrategyContext.of(seed=0, llm=object()))
    with pytest.raises(ValueError, match="needs an LLM"):
        from_config({}, StrategyContext.of(seed=0, llm=None))
    with pytest.raises(ValueError, match="unknown seed 'nope'"):
        from_config({"warm_start": ["nope"]}, StrategyContext.of(seed=0, llm=object()))


def _fitness(src):
    return {"mlp_a": 0.3 if "0.95" in src else 0.0, "cnn_b": 0.2 if "1e-6" in src else -0.1}


def _script(evo, n):
    rules = [evo.GOOD.replace("EPS = 1e-8", f"EPS = 1e-{k}") for k in range(4, 4 + n)]
    return [evo.fence(r) if i % 3 else evo.diff("BETA1 = 0.9", f"BETA1 = 0.{80 + i}") for i, r in enumerate(rules)]


def test_resume_mid_run_continues_with_the_same_islands_and_prompts(llm_for, evo):
    params = {"warm_start": ["adamw", "lion"], "islands": 2, "migration_interval": 2, "edit": "sample"}
    script = _script(evo, 12)
    llm_a, server_a = llm_for(script)
    straight = from_config(params, StrategyContext.of(seed=7, llm=llm_a))
    evo.drive(straight, 6, _fitness)

    llm_b, server_b = llm_for(script)
    first = from_config(params, StrategyContext.of(seed=7, llm=llm_b))
    evo.drive(first, 3, _fitness)
    saved = json.loads(json.dumps(first.state()))  # what the store keeps
    resumed = from_config(params, StrategyContext.of(seed=7, llm=llm_b))
    resumed.load_state(saved)
    assert resumed.pop.islands == first.pop.islands and resumed.state() == saved
    evo.drive(resumed, 3, _fitness)
    assert [r["messages"] for r in server_b.requests] == [r["messages"] for r in server_a.requests]
    assert resumed.pop.islands == straight.pop.islands
    assert resumed.selector.state() == straight.selector.state()


def test_a_state_saved_with_the_removed_fingerprint_twins_still_loads(llm_for, evo):
    llm, _ = llm_for(_script(evo, 4))
    st = from_config({"warm_start": ["adamw"], "islands": 1}, StrategyContext.of(seed=3, llm=llm))
    evo.drive(st, 2, _fitness)
    saved = json.loads(json.dumps(st.state()))
    old = dict(saved, fingerprints={"fp-1": "abc"})  # written before functional twins were dropped
    old["population"] = dict(old["population"], programs=[dict(p, twin_of=None) for p in saved["population"]["programs"]])
    resumed = from_config({"warm_start": ["adamw"], "islands": 1}, StrategyContext.of(seed=3, llm=llm))
    resumed.load_state(old)
    assert resumed.state() == saved


def test_lost_results_are_neither_parents_nor_failures(llm_for):
    llm, _ = llm_for([])
    st = from_config({"warm_start": ["adamw", "sgd"]}, StrategyContext.of(seed=0, llm=llm))
    a, b = st.propose(2)
    st.observe(a, EvaluationResult.failure(Status.LOST, "worker died", stage="smoke"))
    assert st.pop.programs[a.id].status == "lost" and st.pop.pending() == 1
    assert not any(st.failures[0]) and st.best() is None
