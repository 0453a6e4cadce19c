"""An LLM strategy's run killed (SIGKILL) right after an LLM answer was recorded and before the proposals
made from it were committed, then resumed: the resumed strategy asks that call again, and it is answered
from the record, with no second HTTP request and no second count, so the run's LLM budget and cost
totals equal the uninterrupted run's (`optforge.llm.resumed`).

The real engine, evaluator, sandbox, store and Ray on `smoke` (tests/search/real_engine.py), against the
scripted LLM server. The kill is exact: the driver (this file run as a script) kills itself and its Ray
once the store has recorded the K-th answer. Each script holds every entry twice, so a call asked again
would be answered (and counted by the server). Slow (minutes): run with `-m slow`.

Driver: `python test_llm_resume.py CONFIG.json RUN_DIR K`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from real_engine import run_on_smoke, smoke_config, smoke_pool

HERE = Path(__file__).resolve().parent


def _answer(values: dict) -> str:
    return "```json\n" + json.dumps({"reasoning": "see the feedback", "answer": "", "suggestion": values}) + "\n```\n"


def _opto():
    from optforge import seeds

    beta = seeds.source("adamw").replace("BETA2 = 0.999", "BETA2 = 0.99")
    script = [{"match": r"BETA2 = 0\.99\b", "content": "TERMINATE"},
              {"match": r"#Variables", "content": _answer({"rule": beta})}]
    config = smoke_config({"name": "opto", "split_constants": True, "max_steps": 2, "memory_size": 2}, {}, {})
    return script, config


def _polca():
    from optforge import seeds

    adamw = seeds.source("adamw")
    script = [f"```python\n{adamw.replace('BETA2 = 0.999', 'BETA2 = 0.95')}```",
              f"```python\n{adamw.replace('BETA1 = 0.9', 'BETA1 = 0.8')}```",
              {"match": "^Analyse", "content": "<reasoning>r</reasoning>\n<summary>beta2 0.95 helps</summary>"}]
    params = {"warm_start": ["adamw"], "num_candidates": 1, "num_proposals": 2, "batch_size": 2,
              "max_iterations": 1, "search_seeds": list(smoke_pool())}
    config = smoke_config({"name": "polca", **params}, {}, {})
    return script, config


def _evolve():
    from optforge import seeds

    adamw = seeds.source("adamw")
    script = [f"A better rule:\n```python\n{adamw.replace('BETA2 = 0.999', beta)}```\n"
              for beta in ("BETA2 = 0.99", "BETA2 = 0.95", "BETA2 = 0.9")]
    # the run ends when its LLM budget is spent: a resumed run that counted an answer twice would end early.
    # Killed at k=2, its last allowed call: the engine's budget check reads the client's spend, so the held
    # answer does not stop the search before the strategy asks for it again (it read the store's requests)
    config = smoke_config({"name": "evolve", "warm_start": ["adamw"], "islands": 1, "edit": "full"}, {},
                          {"max_llm_calls": 2})
    return script, config


RUNS = {"opto": _opto, "polca": _polca, "evolve": _evolve}


def _with_server(config: dict, url: str) -> dict:
    return {**config, "llm": {**config["llm"], "api_base": url}}


def _counted(store, strategy) -> tuple:
    """What the run counted: (requests, the calls kept, each prompt's dollars); the store, the client's budget
    and the saved state checked to agree, and the dollars to be each kept call's once, exactly."""
    llm, saved = strategy.llm, store.strategy_state()["llm"]
    dollars = float(sum(Fraction(c["dollars"]) for c in store.llm_calls()))
    assert llm.spent_dollars == saved["spent_dollars"] == dollars == pytest.approx(store.llm_spend()[0], rel=1e-12)
    assert llm.calls_made == saved["calls_made"] == store.llm_spend()[1]
    # prompts are compared within a run only: evolve's first prompt differed between two runs (likely the
    # rule's RSS-measured state memory, which it quotes unmarked)
    calls = [(c["response"], c.get("attempts")) for c in store.llm_calls()]
    # a prompt's dollars depend on its measured text (a step-time ratio), which two runs need not share
    prices = {(c["prompt"], c["response"]): c["dollars"] for c in store.llm_calls()}
    return llm.calls_made, calls, prices


def _outcome(store) -> tuple:
    cands = [(c.id, c.source, c.parents) for c in store.candidates(include_reference=False)]
    rows = [(e.candidate_id, e.stage, e.status.value, e.seeds, e.fitness) for e in store.evaluations()]
    return cands, rows, [(r.kind, r.data) for r in store.records()]


def _kill_after_answer(config: dict, run_dir: Path, k: int) -> None:
    """Run `config` in a driver that SIGKILLs itself (and its Ray) once the store holds its k-th answer."""
    run_dir.mkdir(parents=True)
    spec = run_dir.parent / f"{run_dir.name}.json"
    spec.write_text(json.dumps(config))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS="local")
    proc = subprocess.Popen([sys.executable, str(HERE / "test_llm_resume.py"), str(spec), str(run_dir), str(k)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(ray_local, tmp_path_factory):
    """strategy name -> (store, strategy, requests served) of its uninterrupted run."""
    from optforge.llm.scripted import ScriptedServer

    done = {}

    def get(name):
        if name not in done:
            script, config = RUNS[name]()
            with ScriptedServer(script + script) as server:
                store, strategy = run_on_smoke(tmp_path_factory.mktemp(name) / "run", _with_server(config, server.url))
                done[name] = store, strategy, server.served
        return done[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name, k", [("opto", 1), ("polca", 1), ("polca", 2), ("evolve", 2)],
                         ids=["opto-first-step", "polca-first-of-two-proposals", "polca-both-proposals",
                              "evolve-the-last-call-its-budget-allows"])
def test_an_answer_recorded_but_not_committed_is_not_asked_or_counted_again(uninterrupted, tmp_path, name, k):
    from optforge.llm.scripted import ScriptedServer
    from optforge.store import Store

    reference, reference_strategy, served = uninterrupted(name)
    script, config = RUNS[name]()
    run_dir = tmp_path / "killed"
    with ScriptedServer(script + script) as server:
        _kill_after_answer(_with_server(config, server.url), run_dir, k)
        with Store.open(run_dir) as killed:
            recorded = [(c["call_id"], c["prompt_hash"], c["response"], c["dollars"]) for c in killed.llm_calls()]
            assert len([c for c in recorded if c[2]]) == k and server.served == k
            # killed in the window: the last committed state has not seen the k-th answer
            assert killed.strategy_state()["llm"]["log_rows"] < len(killed.llm_calls())
        store, strategy = run_on_smoke(run_dir, _with_server(config, server.url))
        assert server.served == served  # the k-th call was not sent again
    # ... nor recorded again: the killed run's records stay as they were, first
    assert [(c["call_id"], c["prompt_hash"], c["response"], c["dollars"]) for c in store.llm_calls()][:k] == recorded
    assert store.meta("status") == "finished"
    requests, calls, prices = _counted(store, strategy)
    reference_requests, reference_calls, reference_prices = _counted(reference, reference_strategy)
    assert (requests, calls) == (reference_requests, reference_calls)
    assert all(prices[k] == reference_prices[k] for k in prices.keys() & reference_prices.keys())
    assert _outcome(store) == _outcome(reference)


def _die_after_answers(k: int) -> None:
    """Make this process SIGKILL its process group (itself and its Ray) once the store has recorded
    the k-th answered LLM call: after the record's commit, before the strategy sees the answer."""
    from optforge.store import Store

    record = Store.record_llm_call
    answered = []

    def record_then_die(self, call):
        record(self, call)
        if getattr(call, "response", ""):
            answered.append(call)
            if len(answered) == k:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    Store.record_llm_call = record_then_die


if __name__ == "__main__":
    from optforge.scheduler import start_ray

    _die_after_answers(int(sys.argv[3]))
    start_ray(None, num_cpus=2, num_gpus=0)
    run_on_smoke(sys.argv[2], json.loads(Path(sys.argv[1]).read_text()))
