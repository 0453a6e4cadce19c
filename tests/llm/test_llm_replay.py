import sqlite3

import pytest

from optforge.llm import LLMClient, LLMError, ReplayError
from optforge.store import Store


def _record_run(scripted, run_dir, script, prompts):
    store = Store(run_dir)
    client, server, _ = scripted(script, recorder=store.record_llm_call,
                                 input_cost_per_token=1e-6, output_cost_per_token=1e-6, max_retries=1)
    out = []
    for p in prompts:
        try:
            out.append(client.complete(p).text)
        except LLMError as e:
            out.append(type(e).__name__)
    store.close()
    return out, client.spent_dollars


def test_replay_answers_in_order_and_by_prompt_hash(scripted, tmp_path):
    script = ["a1", "b1", "a2", {"fault": "500"}, {"fault": "500"}, "never reached"]
    prompts = ["A", "B", "A", "C"]
    live, spent = _record_run(scripted, tmp_path, script, prompts)
    assert live == ["a1", "b1", "a2", "LLMError"]

    calls = []
    replay = LLMClient({"model": "openai/scripted", "replay": str(tmp_path), "api_key_env": "UNSET_KEY_VAR",
                        "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}, recorder=calls.append, environ={})
    # order across different prompts may change; per prompt the recorded order holds
    assert replay.complete("B").text == "b1"
    assert replay.complete("A").text == "a1"
    assert replay.complete("A").text == "a2"
    with pytest.raises(LLMError, match="500|InternalServer"):
        replay.complete("C")  # the recorded failure replays as a failure
    assert replay.spent_dollars == pytest.approx(spent)
    assert [c.response for c in calls] == ["b1", "a1", "a2", ""]
    with pytest.raises(ReplayError, match="answered already"):
        replay.complete("A")
    with pytest.raises(ReplayError, match="never recorded"):
        replay.complete("Z")


def test_replay_needs_a_run_with_llm_calls(tmp_path):
    with pytest.raises(ReplayError, match="no run database"):
        LLMClient({"model": "openai/x", "replay": str(tmp_path / "nope"), "input_cost_per_token": 0,
                   "output_cost_per_token": 0})
    sqlite3.connect(tmp_path / "run.db").execute("CREATE TABLE other(x)").connection.commit()
    with pytest.raises(ReplayError, match="no llm_calls table"):
        LLMClient({"model": "openai/x", "replay": str(tmp_path), "input_cost_per_token": 0,
                   "output_cost_per_token": 0})
