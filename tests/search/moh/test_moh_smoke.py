"""A deterministic MoH run on the `smoke` suite through the real engine, evaluator, sandboxes
(rules and procedures), store and Ray, against the scripted LLM server; then its offline replay is
identical. One subtask per smoke task, weighted 1 and 3. The rules the seed procedures write all
diverge (the worst fitness, answered without a rollout); the one the new procedure writes is AdamW
with another beta2, rolled out on each subtask. (The smoke suite is a gate, not a measurement: its
20-step tasks score AdamW itself at the floor here, so which procedure wins is not asserted; the
fake-evaluator run in test_moh_run.py checks acceptance.) Slow (minutes)."""

from __future__ import annotations

import pytest
from moh_harness import NEW_PROCEDURE, outcome, run_moh, script

from optforge import seeds
from optforge.llm.scripted import ScriptedServer
from optforge.store import Store

pytestmark = pytest.mark.slow

ADAMW = seeds.source("adamw")
DIVERGES = "import torch\n\nLR = 1e-3\n\n\ndef init(p, ctx):\n    return {}\n\n\ndef update(p, g, state, ctx):\n" \
           "    return g * K\n"
RULES = {0.2: DIVERGES.replace("K", "2e6"), 0.3: DIVERGES.replace("K", "3e6"), 0.5: DIVERGES.replace("K", "5e6"),
         0.9: ADAMW.replace("BETA2 = 0.999", "BETA2 = 0.99")}
PARAMS = {"subtasks": {"quad": ["smoke_quad"], "mix": ["smoke_mix"]}, "weights": {"quad": 1.0, "mix": 3.0},
          "search_seeds": [0]}


def test_moh_on_smoke_two_iterations_self_invocation_and_an_identical_replay(ray_local, tmp_path):
    assert "BETA2 = 0.999" in ADAMW
    with ScriptedServer(script(rules=RULES, subtasks="(quad|mix)")) as server:
        store, strategy = run_moh(tmp_path / "live", {"api_base": server.url}, PARAMS, smoke=True)
    assert strategy.stop_reason == "n_iterations (2) done", store.meta("failure")
    procs = [r.data for r in store.records("procedure")]
    assert [p["origin"] for p in procs] == ["seed evolve", "seed polca", "seed meta", "iteration 0"]
    for p in procs:
        best = {s: d["best"] for s, d in p["subtasks"].items()}
        assert p["utility"] == pytest.approx((best["quad"] + 3 * best["mix"]) / 4)
    assert all(p["utility"] == -3.0 for p in procs[:3])  # every rule they wrote diverged
    diverged = [c for c in store.candidates() if c.source in (RULES[0.2], RULES[0.3], RULES[0.5])]
    assert len(diverged) == 3 and not any(store.rollouts(c.id) for c in diverged)
    assert all(store.evaluation(c.id, "smoke").status.value == "diverged" for c in diverged)
    new = procs[3]
    assert new["source"] == NEW_PROCEDURE and new["parent"] == procs[2]["id"]
    first, second = (r.data for r in store.records("meta_iteration"))
    assert first["meta_optimizer"] == procs[2]["id"] and first["best_new"] == new["id"]
    # self-invocation: the next round's meta-optimizer is the new procedure if it beat the incumbent
    assert second["meta_optimizer"] == (new["id"] if first["accepted"] else procs[2]["id"])
    assert first["accepted"] == (new["utility"] > procs[2]["utility"])
    adamw_099 = next(c for c in store.candidates() if c.source == RULES[0.9])
    rows = {r.tasks: store.evaluations(rollout_id=r.id)[0] for r in store.rollouts(adamw_099.id)}
    assert {r.seeds for r in store.rollouts(adamw_099.id)} == {(0,)}
    assert {t: e.fitness for t, e in rows.items()} == pytest.approx(
        {("smoke_quad",): new["subtasks"]["quad"]["best"], ("smoke_mix",): new["subtasks"]["mix"]["best"]})
    store.close()

    replayed, _ = run_moh(tmp_path / "replay", {"replay": str(tmp_path / "live"), "api_base": "http://127.0.0.1:9/v1"},
                          PARAMS, smoke=True)
    with Store.open(tmp_path / "live") as live:
        assert outcome(replayed) == outcome(live)
