from optforge.search.context import StrategyContext
"""Replay reproduces an evolve run exactly: same prompts, same candidates, no provider, even though
the prompts quote measured step times that differ between the recorded run and the replay."""

import pytest

from optforge.llm import LLMClient, ReplayError
from optforge.search.evolve import from_config
from optforge.store import Store

PARAMS = {"warm_start": ["adamw", "sgd"], "islands": 2, "edit": "sample", "migration_interval": 3}


def _fitness(source):
    k = sum(map(ord, source)) % 7
    return {"mlp_a": k / 10 - 0.3, "cnn_b": 0.1 - k / 20}


def _timed(evo, step_time):
    """ok results that also carry a measured step time, in metrics and in the evaluator's feedback words."""
    def result(scores):
        r = evo.ok_result(scores, feedback=f"Status ok.\nEach step costs {step_time():.1f}x AdamW's optimizer time.")
        r.metrics["step_time_ratio"] = step_time()
        return r
    return result


def _drive(evo, st, rounds, fitness_of, result_of):
    out = []
    for _ in range(rounds):
        for c in st.propose(2):
            out.append(c)
            if c.note.get("status") == "invalid":
                st.observe(c, evo.EvaluationResult.failure(evo.Status.INVALID, c.note["reason"], stage="smoke"))
            else:
                st.observe(c, result_of(fitness_of(c.source)))
    return out


def _replay_client(run_dir, recorder):
    # api_base is a closed port: a request that left the machine would fail, not be answered
    return LLMClient({"model": "openai/scripted", "replay": str(run_dir), "api_key_env": None,
                      "api_base": "http://127.0.0.1:9/v1", "input_cost_per_token": 1e-6,
                      "output_cost_per_token": 2e-6}, recorder=recorder)


@pytest.fixture
def recorded(evo, llm_for, tmp_path):
    """A recorded evolve run against the scripted server, which is stopped before the test goes on."""
    script = [evo.fence(evo.GOOD.replace("EPS = 1e-8", f"EPS = {k}e-9")) if k % 3
              else evo.diff("WD = 0.01", f"WD = 0.0{k}") for k in range(1, 9)] + [{"fault": "empty"}, "no code here"]
    store = Store(tmp_path / "run")
    llm, server = llm_for(script, recorder=store.record_llm_call)
    times = iter([1.6 + 0.37 * k for k in range(100)])
    live = _drive(evo, from_config(PARAMS, StrategyContext.of(seed=11, llm=llm)), 6, _fitness, _timed(evo, lambda: next(times)))
    assert server.served == 10
    server.stop()
    store.close()
    return tmp_path / "run", live, llm


def test_replayed_run_is_identical_though_measured_numbers_differ(evo, recorded):
    run_dir, live, llm = recorded
    calls = []
    replay_llm = _replay_client(run_dir, calls.append)
    times = iter([9.9 - 0.11 * k for k in range(100)])  # other step times than the recorded run measured
    replayed = _drive(evo, from_config(PARAMS, StrategyContext.of(seed=11, llm=replay_llm)), 6, _fitness, _timed(evo, lambda: next(times)))
    assert [c.to_dict() | {"created": 0} for c in replayed] == [c.to_dict() | {"created": 0} for c in live]
    recorded_calls = Store.open(run_dir).llm_calls()
    # the same replay keys (in completion order, which concurrent calls may permute within a batch)
    assert sorted(c.prompt_hash for c in calls) == sorted(c["prompt_hash"] for c in recorded_calls)
    assert any("step time vs AdamW x" in c.prompt for c in calls)  # the model was shown measured numbers
    assert sorted(c.prompt for c in calls) != sorted(c["prompt"] for c in recorded_calls)  # ... which differed
    assert replay_llm.spent_dollars == llm.spent_dollars


def test_a_diverged_replay_raises_out_of_the_strategy(evo, recorded):
    run_dir, _, _ = recorded
    st = from_config(PARAMS, StrategyContext.of(seed=12, llm=_replay_client(run_dir, None)))  # another seed: other prompts
    with pytest.raises(ReplayError, match="diverged"):
        _drive(evo, st, 6, _fitness, _timed(evo, lambda: 2.0))
    assert st.stop_reason is None  # not swallowed as an LLM failure
