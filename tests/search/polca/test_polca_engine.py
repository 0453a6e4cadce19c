"""A deterministic POLCA run through the real engine, evaluator, sandbox, store and Ray, against the
scripted LLM server on the `smoke` suite; then its replay, offline, reproduces it, and the same run
killed with SIGKILL mid-iteration and resumed ends the same. Slow (minutes)."""

from __future__ import annotations


import pytest
from real_engine import kill_at, run_on_smoke, smoke_config, smoke_pool

from optforge import seeds
from optforge.llm.scripted import ScriptedServer
from optforge.store import Store

pytestmark = pytest.mark.slow

ADAMW = seeds.source("adamw")
GOOD = ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.95")
RENAMED = ADAMW.replace("BETA2", "SECOND_MOMENT_DECAY")  # the same updates: the epsilon-net rejects it
SCRIPT = [f"```python\n{GOOD}```", f"```python\n{RENAMED}```",
          {"match": "^Analyse", "content": "<reasoning>r</reasoning>\n<summary>beta2 0.95 helps</summary>"}]


def polca_config(llm_settings):
    params = {"warm_start": ["adamw"], "num_candidates": 1, "num_proposals": 2, "batch_size": 2,
              "max_iterations": 1, "search_seeds": list(smoke_pool())}
    return smoke_config({"name": "polca", **params}, llm_settings, {"max_llm_calls": 3})


def _run(run_dir, llm_settings):
    return run_on_smoke(run_dir, polca_config(llm_settings))


def _outcome(store):
    cands = [(c.id, c.source, c.parents) for c in store.candidates(include_reference=False)]
    rollouts = [(r.candidate_id, r.tasks, r.seeds, r.note.get("purpose")) for r in store.rollouts()]
    rows = [(e.candidate_id, e.stage, e.status.value, e.seeds, e.metrics.get("fitness")) for e in store.evaluations()]
    records = [(r.kind, r.data) for r in store.records()]
    return cands, rollouts, rows, records


@pytest.fixture(scope="module")
def live(ray_local, tmp_path_factory):
    """The uninterrupted run: (run_dir, store, strategy, LLM calls the server served)."""
    run_dir = tmp_path_factory.mktemp("polca") / "live"
    with ScriptedServer(SCRIPT) as server:
        store, strategy = _run(run_dir, {"api_base": server.url})
        return run_dir, store, strategy, server.served


def test_a_polca_run_on_smoke_and_its_replay(live, tmp_path):
    run_dir, store, strategy, served = live
    assert served == 3 and len(store.llm_calls()) == 3  # 2 proposals, 1 summary: each one recorded
    cands, rollouts, rows, records = _outcome(store)
    adamw, good = cands[0][0], next(c for c in cands if c[1] == GOOD)[0]
    assert cands[0][1] == ADAMW and {c[1] for c in cands} == {ADAMW, GOOD}  # the renamed copy is never evaluated
    assert [(r[0], r[3]) for r in rollouts] == [(adamw, "explore")] * 2 + [(good, "validate")] * 2
    assert {r[1:3] for r in rollouts if r[0] == adamw} == {r[1:3] for r in rollouts if r[0] == good}
    kinds = [k for k, _ in records]
    assert kinds.count("epsilon_rejection") == 1 and kinds.count("summary") == 1
    rejection = next(d for k, d in records if k == "epsilon_rejection")
    assert rejection["source"] == RENAMED and rejection["nearest"] == adamw and rejection["distance"] < 1e-9
    assert all(s == "ok" for _, _, s, _, _ in rows)
    assert strategy.done() and strategy.context == "beta2 0.95 helps"

    # replay: no server (a closed port), the recorded answers, the same run
    replayed, _ = _run(tmp_path / "replay", {"replay": str(run_dir), "api_base": "http://127.0.0.1:9/v1"})
    assert _outcome(replayed) == _outcome(store)


def _train_rows(st):
    return sum(e.stage == "train" and e.rollout_id is None for e in st.evaluations())


def _rollout_rows(st):
    return sum(e.rollout_id is not None for e in st.evaluations())


@pytest.mark.parametrize("kill_when, asked", [
    # AdamW's first exploration rollout is in: its second is still to run, and no LLM call was made
    (lambda st: _rollout_rows(st) >= 1, 0),
    # the first child has its train result: its validation rollouts and the summarizer are still to come
    (lambda st: _train_rows(st) >= 2, 2),
], ids=["exploring", "validating"])
def test_a_polca_run_killed_mid_iteration_resumes_to_the_same_run_without_asking_again(live, tmp_path, kill_when, asked):
    """SIGKILL (the driver and its Ray) mid-iteration; the resumed run ends as the uninterrupted one did,
    and the server answers only the calls the killed run never made."""
    _, reference, _, served = live
    killed = tmp_path / "killed"
    with ScriptedServer(SCRIPT) as server:
        kill_at(polca_config({"api_base": server.url}), killed, kill_when)
        with Store.open(killed) as st:
            assert st.meta("status") == "running" and not any(r.kind == "summary" for r in st.records())
            assert len(st.llm_calls()) == server.served == asked
        store, strategy = _run(killed, {"api_base": server.url})
        assert server.served == served == 3
    assert strategy.done() and store.meta("status") == "finished"
    assert len(store.llm_calls()) == 3
    assert _outcome(store) == _outcome(reference)
