"""Replay reproduces an evolve run exactly: same prompts, same candidates, no provider."""

from optforge.llm import LLMClient
from optforge.search.evolve import from_config
from optforge.store import Store

from evolve_helpers import GOOD, diff, drive, fence

PARAMS = {"warm_start": ["adamw", "sgd"], "islands": 2, "edit": "sample", "migration_interval": 3}


def _fitness(source):
    k = sum(map(ord, source)) % 7
    return {"mlp_a": k / 10 - 0.3, "cnn_b": 0.1 - k / 20}


def test_replayed_run_is_identical(llm_for, tmp_path):
    script = [fence(GOOD.replace("EPS = 1e-8", f"EPS = {k}e-9")) if k % 3 else diff("WD = 0.01", f"WD = 0.0{k}")
              for k in range(1, 9)] + [{"fault": "empty"}, "no code here"]
    store = Store(tmp_path / "run")
    llm, server = llm_for(script, recorder=store.record_llm_call)
    live = drive(from_config(PARAMS, seed=11, llm=llm), 6, _fitness)
    assert server.served == 10
    store.close()

    calls = []
    replay_llm = LLMClient({"model": "openai/scripted", "replay": str(tmp_path / "run"), "api_key_env": None,
                            "api_base": "http://127.0.0.1:9/v1", "input_cost_per_token": 1e-6,
                            "output_cost_per_token": 2e-6}, recorder=calls.append)
    replayed = drive(from_config(PARAMS, seed=11, llm=replay_llm), 6, _fitness)
    assert [c.to_dict() | {"created": 0} for c in replayed] == [c.to_dict() | {"created": 0} for c in live]
    # the same prompts (recorded in completion order, which concurrent calls may permute within a batch)
    assert sorted(c.prompt for c in calls) == sorted(c["prompt"] for c in Store.open(tmp_path / "run").llm_calls())
    assert replay_llm.spent_dollars == llm.spent_dollars
