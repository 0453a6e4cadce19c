"""An OPTO run through the real engine, evaluator and sandbox on `smoke`, against the scripted LLM server
(match-keyed entries: an answer is given only to the prompt that shows what the test expects).

OPTO's trace oracle is a rollout, and rollouts draw from the search-seed pool that tests/search/real_engine.py
gives the smoke suite. Slow (a minute or more): run with `-m slow`."""

from __future__ import annotations

import json

import pytest
from real_engine import kill_at, run_on_smoke, smoke_config

from optforge import seeds
from optforge.llm.scripted import ScriptedServer
from optforge.store import Store

pytestmark = pytest.mark.slow

ADAMW = seeds.source("adamw")
# AdamW, except that a bias or gain (role `vector`) gets a NaN update (from its 5th update on) whenever the
# scheduled lr is above twice LR: the high lr trials diverge there, the chosen lr does not, so the
# candidate is ok and its trace rollout records where the diverged trial first went non-finite
NAN_ON_VECTOR = ADAMW.replace(
    "    m, v = state[\"m\"], state[\"v\"]\n",
    "    if ctx.role == \"vector\" and ctx.lr > 2 * LR and ctx.t >= 5:\n"
    "        return torch.full_like(g, float(\"nan\"))\n"
    "    m, v = state[\"m\"], state[\"v\"]\n")


def answer(values: dict) -> str:
    return "```json\n" + json.dumps({"reasoning": "see the feedback", "answer": "", "suggestion": values}) + "\n```\n"


SCRIPT = [
    # step 1, on AdamW's trace: rewrite the code into the rule that breaks on role vector
    {"match": r"#Variables", "content": answer({"rule": NAN_ON_VECTOR})},
    # step 2, only if the feedback names the role and step where the rule first went non-finite
    {"match": r"the update at step \d+, role vector", "content": answer({"BETA2": 0.995})},
    # step 3: no change
    {"match": r"BETA2 = 0\.995", "content": "TERMINATE"},
]


def opto_config(llm_settings):
    return smoke_config({"name": "opto", "split_constants": True, "max_steps": 3, "memory_size": 2}, llm_settings,
                        {"max_llm_calls": 5})


def run_opto(run_dir, llm_settings):
    return run_on_smoke(run_dir, opto_config(llm_settings))


@pytest.fixture(scope="module")
def live(ray_local, tmp_path_factory):
    """The uninterrupted run: (run_dir, store, strategy, LLM calls the server served)."""
    run_dir = tmp_path_factory.mktemp("opto") / "a"
    with ScriptedServer(SCRIPT) as server:
        store, strategy = run_opto(run_dir, {"api_base": server.url})
        return run_dir, store, strategy, server.served


def _outcome(store):
    cands = [(c.id, c.source, c.parents, c.note.get("lineage")) for c in store.candidates(include_reference=False)]
    rollouts = [(r.candidate_id, r.tasks, r.seeds, r.detail) for r in store.rollouts()]
    rows = [(e.candidate_id, e.stage, e.status.value, e.seeds, e.metrics.get("fitness")) for e in store.evaluations()]
    records = [(r.kind, r.candidate_id, r.data) for r in store.records()]
    return cands, rollouts, rows, records, [c["prompt_hash"] for c in store.llm_calls()]


def test_opto_on_smoke_feeds_the_diverged_role_back_records_the_constant_and_replays(live, tmp_path):
    run_dir, store, strategy, served = live
    assert served == 3, store.meta("failure")
    cands = store.candidates()
    seed, nan_rule, beta = cands
    assert seed.source == ADAMW and nan_rule.source == NAN_ON_VECTOR and nan_rule.parents == (seed.id,)
    assert nan_rule.note["lineage"] == "code rewritten"
    assert store.evaluation(nan_rule.id, "train").ok
    # the third prompt (after the NaN rule's trace) names the role and step in #Feedback
    prompts = ["\n".join(m["content"] for m in json.loads(c["prompt"])) for c in store.llm_calls()]
    traced = [e for r in store.rollouts(nan_rule.id) for e in store.evaluations(rollout_id=r.id)]
    firsts = [t["diverged"]["first_nonfinite"] for t in traced[0].artifacts["trace"]["tasks"] if t["diverged"]]
    assert firsts and all(f["role"] == "vector" and f["kind"] == "update" and f["step"] >= 5 for f in firsts)
    feedback = prompts[1].split("#Feedback", 1)[1]
    for f in firsts:
        assert f"first non-finite value: the update at step {f['step']}, role vector" in feedback
    assert beta.source == NAN_ON_VECTOR.replace("BETA2 = 0.999", "BETA2 = 0.995")
    assert beta.note["change"]["code_changed"] is False
    assert beta.note["lineage"] == "constant BETA2 0.999 \u2192 0.995"
    assert strategy.done() and strategy.chains[0].end_reason.startswith("TERMINATE")
    assert store.rollouts() and all(r.detail == "trace" for r in store.rollouts())
    # offline replay of the recorded run (the server is stopped): the same candidates, bit for bit
    again, _ = run_opto(tmp_path / "b", {"replay": str(run_dir), "api_base": "http://127.0.0.1:9/v1"})
    with Store.open(run_dir) as a:
        assert [(c.id, c.source, c.parents) for c in again.candidates()] == [(c.id, c.source, c.parents)
                                                                              for c in a.candidates()]
        assert [c["prompt_hash"] for c in again.llm_calls()] == [c["prompt_hash"] for c in a.llm_calls()]


def _train_rows(st):
    return sum(e.stage == "train" and e.rollout_id is None for e in st.evaluations())


@pytest.mark.parametrize("kill_when, asked", [
    # AdamW's train result is in, its trace rollout (the first oracle) still to come: no step taken yet
    (lambda st: _train_rows(st) >= 1, 0),
    # the first LLM-made rule has its train result: its trace rollout and the next two steps are to come
    (lambda st: _train_rows(st) >= 2, 1),
], ids=["first-oracle", "second-rule"])
def test_an_opto_run_killed_mid_step_resumes_to_the_same_run_without_asking_again(live, tmp_path, kill_when, asked):
    """SIGKILL (the driver and its Ray) mid-run; the resumed run ends as the uninterrupted one did, and
    the server answers only the calls the killed run never made."""
    _, reference, _, served = live
    killed = tmp_path / "killed"
    with ScriptedServer(SCRIPT) as server:
        kill_at(opto_config({"api_base": server.url}), killed, kill_when)
        with Store.open(killed) as st:
            assert st.meta("status") == "running"
            assert len(st.llm_calls()) == server.served == asked
        store, strategy = run_opto(killed, {"api_base": server.url})
        assert server.served == served == 3
    assert strategy.done() and store.meta("status") == "finished"
    assert _outcome(store) == _outcome(reference)
