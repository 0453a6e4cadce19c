"""LLM calls in the run directory: finish_reason and attempts have columns, and a run directory
written before they existed still opens, resumes, counts and replays."""

import json
import sqlite3
import threading
import time

from optforge.llm import LLMClient, prompt_hash
from optforge.llm.records import IN_FLIGHT, LLMCall
from optforge.store import Store

OLD_HASH = prompt_hash("old prompt")  # the replay key of an unmarked prompt, then and now

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE llm_calls (
    id INTEGER PRIMARY KEY,
    model TEXT, prompt TEXT, response TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER,
    dollars REAL, latency_s REAL, created REAL,
    extra TEXT
);
"""


def _old_run(run_dir):
    """A run.db as ad101a4 wrote it: one call retried once, its attempts and hash in `extra`."""
    run_dir.mkdir()
    db = sqlite3.connect(run_dir / "run.db")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO llm_calls(model, prompt, response, prompt_tokens, completion_tokens, dollars, latency_s,"
               " created, extra) VALUES ('openai/scripted', 'old prompt', 'old answer', 3, 3, 0.5, 0.1, 1.0, ?)",
               (json.dumps({"prompt_hash": OLD_HASH, "error": "", "attempts": 2}),))
    db.commit()
    db.close()


def test_finish_reason_and_attempts_are_recorded_with_each_call(scripted, tmp_path):
    store = Store(tmp_path)
    client, _, _ = scripted([{"content": "cut", "finish_reason": "length"}, {"fault": "500"},
                             {"content": "whole", "reasoning_content": "plan"}], recorder=store.record_llm_call)
    assert client.complete("a").finish_reason == "length"
    r = client.complete("b")
    assert (r.text, r.finish_reason, r.reasoning, r.call.attempts) == ("whole", "stop", "plan", 2)
    rows = store._db.execute("SELECT finish_reason, attempts FROM llm_calls ORDER BY id").fetchall()
    assert [tuple(row) for row in rows] == [("length", 1), ("stop", 2)]
    assert [c["finish_reason"] for c in store.llm_calls()] == ["length", "stop"]
    assert store.llm_spend()[1] == 3


def test_an_old_run_directory_gains_the_columns_and_keeps_its_counts(tmp_path):
    run = tmp_path / "old"
    _old_run(run)
    with Store.open(run) as reader:  # a reader does not write: the old table is read as it is
        assert reader.llm_spend() == (0.5, 2)
        assert reader.llm_calls()[0]["attempts"] == 2
    store = Store.resume(run)  # what `optforge run --resume` opens: run.db.v0 kept, then migrated
    cols = {r[1] for r in store._db.execute("PRAGMA table_info(llm_calls)")}
    assert {"finish_reason", "attempts"} <= cols
    assert store.llm_spend() == (0.5, 2)  # the old row's attempts still come from `extra`
    store.record_llm_call({"model": "m", "prompt": "new", "response": "r", "dollars": 0.25, "attempts": 3,
                           "finish_reason": "stop", "prompt_hash": "h-new"})
    assert store.llm_spend() == (0.75, 5)
    calls = store.llm_calls()
    assert [(c["prompt_hash"], c["attempts"], c["finish_reason"]) for c in calls] == [
        (OLD_HASH, 2, None), ("h-new", 3, "stop")]
    store.close()
    Store(run).close()  # opening again adds nothing twice

    replay = LLMClient({"model": "openai/scripted", "replay": str(run), "api_key_env": None,
                        "input_cost_per_token": 0, "output_cost_per_token": 0})
    r = replay.complete("old prompt")
    assert (r.text, r.finish_reason) == ("old answer", "")  # unknown for an old row
    assert replay.calls_made == 2  # the recorded retry is charged too


def test_a_request_the_run_was_waiting_on_counts_after_a_kill_and_is_not_replayed(scripted, tmp_path):
    store = Store(tmp_path)
    client, server, _ = scripted([{"content": "slow", "sleep_s": 2.0}, "fast"], recorder=store.record_llm_call)
    waiting = threading.Thread(target=client.complete, args=("slow prompt",))
    waiting.start()
    while server.served < 1:
        time.sleep(0.02)
    with Store.open(tmp_path) as other:  # what a resumed run finds if this one is killed now
        assert other.llm_spend()[1] == 1
        assert other.llm_calls()[0]["error"].startswith("in flight")
    waiting.join()
    client.complete("fast prompt")
    assert [(c["response"], c["error"], c["attempts"]) for c in store.llm_calls()] == [("slow", "", 1), ("fast", "", 1)]

    # a run killed while waiting leaves its in-flight record: counted, but never replayed as an answer
    killed = tmp_path / "killed"
    with Store(killed) as st:
        st.record_llm_call(LLMCall("openai/scripted", "slow prompt", "", 0, 0, 0.0, 0.0, 0.0,
                                   prompt_hash("slow prompt"), IN_FLIGHT, 1, call_id="killed-call"))
        st.record_llm_call({"model": "openai/scripted", "prompt": "slow prompt", "response": "slow", "attempts": 1,
                            "prompt_hash": prompt_hash("slow prompt"), "error": ""})  # the resumed run's call
        assert st.llm_spend()[1] == 2
    replay = LLMClient({"model": "openai/scripted", "replay": str(killed), "api_key_env": None,
                        "input_cost_per_token": 0, "output_cost_per_token": 0})
    assert replay.complete("slow prompt").text == "slow"
