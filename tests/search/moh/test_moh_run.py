"""MoH runs through the real engine, store, Ray, procedure sandbox and scripted LLM server (the
engine's fake evaluator scores rules; see moh_harness). The two-iteration run and its replay are slow
(`-m slow`); the refusals run is in the default suite."""

from __future__ import annotations

import json
import re

import pytest
from moh_harness import NEW_PROCEDURE, outcome, run_moh, script

from optforge.llm.scripted import ScriptedServer
from optforge.search.moh.procedures import load_procedure
from optforge.search.moh.subtasks import WORST

WEIGHTS = {"a": 1.0, "b": 3.0}


def _records(store, kind):
    return [r.data for r in store.records(kind)]


@pytest.mark.slow  # about a minute: two runs of 14 sandboxed procedure runs each
def test_two_outer_iterations_self_invocation_weighted_meta_utility_and_an_identical_replay(ray_local, tmp_path):
    with ScriptedServer(script()) as server:
        store, strategy = run_moh(tmp_path / "live", {"api_base": server.url})
        served = server.served
    assert strategy.done() and strategy.stop_reason == "n_iterations (2) done", store.meta("failure")
    procs = _records(store, "procedure")
    assert [p["origin"] for p in procs] == ["seed evolve", "seed polca", "seed meta", "iteration 0"]
    assert [p["source"] for p in procs[:3]] == [load_procedure(n) for n in ("evolve", "polca", "meta")]
    for p in procs:  # the meta-utility is the weighted mean of the best fitness per subtask
        assert p["status"] == "ok", p["reason"]
        assert {s: d["weight"] for s, d in p["subtasks"].items()} == WEIGHTS
        assert p["utility"] == pytest.approx(sum(WEIGHTS[s] * d["best"] for s, d in p["subtasks"].items()) / 4)
    new = procs[3]
    assert new["source"] == NEW_PROCEDURE and new["parent"] == procs[2]["id"]  # written by the meta seed
    # the fake evaluator: rule 0.9 scores 0.7 on (a, seed 100) and 1.0 on (b, seed 100)
    assert {s: d["best"] for s, d in new["subtasks"].items()} == pytest.approx({"a": 0.7, "b": 1.0})
    assert new["utility"] == pytest.approx((0.7 + 3 * 1.0) / 4)
    first, second = _records(store, "meta_iteration")
    assert first["meta_optimizer"] == procs[2]["id"] and first["accepted"] and first["best_new"] == new["id"]
    assert second["meta_optimizer"] == new["id"]  # self-invocation: the new procedure improved procedures
    assert not second["accepted"] and second["run_status"] == "ok"
    runs = _records(store, "procedure_run")
    assert [(r["procedure"], r["level"], r["subtask"]) for r in runs][-1] == (new["id"], "meta", "procedures")
    # every rule evaluated is a subtask rollout on exactly that subtask's task and the one rollout seed
    assert {(r.tasks, r.seeds) for r in store.rollouts()} == {(("a",), (100,)), (("b",), (100,))}
    assert all(len(store.evaluations(rollout_id=r.id)) == 1 for r in store.rollouts())
    assert served == len(store.llm_calls()) == sum(r["llm_calls"] for r in runs)
    assert strategy.best()["id"] == new["id"]
    store.close()

    # offline replay: the server is gone (a closed port), the recorded answers, the same run
    replayed, _ = run_moh(tmp_path / "replay", {"replay": str(tmp_path / "live"), "api_base": "http://127.0.0.1:9/v1"})
    with __import__("optforge.store", fromlist=["Store"]).Store.open(tmp_path / "live") as live:
        assert outcome(replayed) == outcome(live)


HELDOUT_ASKER = '''"""Asks for evaluations it may not have."""


def improve(population, utility, llm, task):
    said = []
    for subtask in ["held_lm", "heldout", "other"]:
        try:
            utility(population.get(0)["source"], subtask)
        except Exception as e:
            said.append(str(e))
    return {"source": population.get(0)["source"], "idea": " | ".join(said)}
'''

LLM_HOG = '''"""Asks for more LLM calls than its sub-budget."""


def improve(population, utility, llm, task):
    said = []
    for i in range(6):
        try:
            llm.prompt("You answer.", task + " HOG " + str(i), 0.0)
        except Exception as e:
            said.append(str(e))
    return {"source": population.get(0)["source"], "idea": " | ".join(said)}
'''

RAISES = '''"""Raises."""


def improve(population, utility, llm, task):
    raise ValueError("boom in the procedure")
'''

RETURNS_NOTHING = '''"""Returns nothing."""


def improve(population, utility, llm, task):
    return None
'''


def test_refused_calls_and_failed_procedures_end_with_a_reason_and_the_run_goes_on(ray_local, tmp_path):
    files = {}
    for name, text in {"heldout": HELDOUT_ASKER, "hog": LLM_HOG, "raises": RAISES, "nothing": RETURNS_NOTHING}.items():
        files[name] = tmp_path / f"{name}.py"
        files[name].write_text(text)
    params = {"seed_procedures": [str(files[n]) for n in ("heldout", "hog", "raises", "nothing")], "n_iterations": 1}
    hog = {"match": r" HOG \d\Z", "content": "fine", "repeat": True}
    with ScriptedServer([hog, *script()]) as server:
        store, strategy = run_moh(tmp_path / "run", {"api_base": server.url}, params)
    assert strategy.stop_reason == "n_iterations (1) done", store.meta("failure")
    procs = {p["origin"]: p for p in _records(store, "procedure")}
    runs = _records(store, "procedure_run")

    asker = [r for r in runs if r["procedure"] == procs[f"seed {files['heldout']}"]["id"]]
    assert [r["subtask"] for r in asker] == ["a", "b"]
    for r in asker:
        assert len(r["refused"]) == 3 and all(x.startswith("bad_request") for x in r["refused"])
        assert r["returned_idea"].count("bad_request") == 3 and r["utility_calls"] == 0
    assert all(set(r.tasks) <= {"a", "b"} for r in store.rollouts())  # nothing held out was evaluated

    hogs = [r for r in runs if r["procedure"] == procs[f"seed {files['hog']}"]["id"]]
    assert [r["llm_calls"] for r in hogs] == [4, 4]  # llm_calls_per_run
    for r in hogs:
        assert len(r["refused"]) == 2 and all("LLM sub-budget" in x for x in r["refused"])
    hog_prompts = [c for c in store.llm_calls() if re.search(r" HOG \d\Z", json.loads(c["prompt"])[-1]["content"])]
    assert len(hog_prompts) == 8  # refused calls never reached the provider

    for name in ("raises", "nothing"):
        p = procs[f"seed {files[name]}"]
        assert p["status"] == "failed" and p["utility"] == WORST and p["reason"]
    assert "boom in the procedure" in procs[f"seed {files['raises']}"]["reason"]
    [it] = _records(store, "meta_iteration")  # the run went on to its outer iteration
    assert it["run_status"] == "ok"


def test_the_runs_llm_budget_is_never_exceeded(ray_local, tmp_path):
    with ScriptedServer(script()) as server:
        store, strategy = run_moh(tmp_path / "run", {"api_base": server.url}, budget={"max_llm_calls": 5})
        served = server.served
    assert store.meta("status") == "finished", store.meta("failure")
    assert served == len(store.llm_calls()) == 5  # the budget was reached, and not passed
    assert store.meta("stop_reason") in ("max_llm_calls", "strategy done"), store.meta("stop_reason")
    refused = [x for r in store.records("procedure_run") for x in r.data["refused"]]
    assert all("LLM sub-budget" in x or "LLM budget is exhausted" in x or "evaluation budget" in x for x in refused)
