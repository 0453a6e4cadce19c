"""End to end: `optforge run` with strategy evolve against the scripted LLM server, with real Ray,
the real sandbox and evaluator, and the real store. Slow (minutes): run with `-m slow`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from optforge import seeds
from optforge.llm.scripted import ScriptedServer
from optforge.store import Store



def fence(src: str) -> str:
    return f"A better rule:\n```python\n{src}```\n"

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
GOOD = seeds.source("sgd").replace("SGD with heavy-ball momentum.", "Momentum SGD found by evolve.")
BROKEN_DIFF = "<<<<<<< SEARCH\nBETA9 = 0.5\n=======\nBETA9 = 0.6\n>>>>>>> REPLACE\n"
SYNTAX = fence("import torch\nLR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx)\n    return -g\n")
DIVERGES = fence("import torch\nLR = 1e-3\n\n\ndef init(p, ctx):\n    return {}\n\n\n"
                 "def update(p, g, state, ctx):\n    return g * 1e6 + p * 10.0\n")


def _config(tmp_path, url, max_calls):
    cfg = {
        "strategy": {"name": "evolve", "warm_start": ["adamw"], "islands": 1, "edit": "full"},
        "suite": "smoke", "stages": ["smoke", "train"], "slots": 2, "deterministic": True, "seed": 0,
        "budget": {"max_llm_calls": max_calls, "max_seconds": 900},
        "llm": {"model": "openai/scripted", "api_base": url, "api_key_env": None, "concurrency": 1,
                "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        "sandbox": {"timeout_s": 120},
    }
    path = tmp_path / "evolve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env():
    # RAY_ADDRESS=local: start a private Ray even if another Ray session runs on this machine
    return dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS="local")


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "optforge", "run", *args, "--quiet"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=900, **kw)


def test_evolve_run_stores_every_outcome_and_ranks_the_good_rule_first(tmp_path):
    script = [fence(GOOD), BROKEN_DIFF, SYNTAX, DIVERGES]
    with ScriptedServer(script) as server:
        cfg = _config(tmp_path, server.url, max_calls=4)
        proc = _run([str(cfg), "--out", str(tmp_path / "run")])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.served == 4
    store = Store.open(tmp_path / "run")
    cands = {c.id: c for c in store.candidates()}
    by_source = {c.source.strip(): c for c in cands.values()}
    status = {c.id: {e.stage: e.status.value for e in store.evaluations(c.id)} for c in cands.values()}
    good = by_source[GOOD.strip()]
    assert status[good.id] == {"smoke": "ok", "train": "ok"}
    invalid = [c for c in cands.values() if c.note.get("status") == "invalid"]
    reasons = sorted(c.note["reason"].split(":")[0] for c in invalid)
    assert reasons == ["failed diff", "rule check failed"]
    assert all(set(status[c.id].values()) == {"invalid"} for c in invalid)
    diverging = next(c for c in cands.values() if "1e6" in c.source)
    assert "diverged" in status[diverging.id].values() and "train" not in status[diverging.id]
    assert store.best("train").candidate.id == good.id  # beats its AdamW parent on the smoke suite
    calls = store.llm_calls()
    assert len(calls) == 4 and all(c["dollars"] > 0 for c in calls)
    state = store.strategy_state()
    assert {p["id"] for p in state["population"]["programs"]} == set(cands)


def test_resume_mid_run_continues_with_the_same_island_state(tmp_path):
    rules = [fence(GOOD.replace("MOMENTUM = 0.9", f"MOMENTUM = 0.{k}")) for k in (3, 4, 5, 6, 7, 8)]
    # the 3rd call hangs past the engine's 30 s proposer join: the run is interrupted while it waits,
    # and that call is never recorded (its response never arrives)
    script = [rules[0], rules[1], {"content": rules[2], "sleep_s": 120}, *rules[3:]]
    with ScriptedServer(script) as server:
        cfg = _config(tmp_path, server.url, max_calls=5)
        cfg_text = yaml.safe_load(cfg.read_text())
        cfg_text["strategy"]["islands"] = 2
        cfg.write_text(yaml.safe_dump(cfg_text))
        out = tmp_path / "run"
        proc = subprocess.Popen([sys.executable, "-m", "optforge", "run", str(cfg), "--out", str(out), "--quiet"],
                                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 600
        while time.time() < deadline and server.served < 3:
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=300)
        store = Store.open(out)
        before = store.strategy_state()
        assert store.meta("status") == "interrupted"
        calls = store.llm_calls()
        assert len(calls) == 3 and calls[-1]["error"].startswith("in flight")  # the 3rd request counts
        store.close()
        assert before is not None and 1 <= before["proposals"] <= 2
        done = _run(["--resume", str(out)])
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.served == 5  # 2 + the lost one (recorded in flight) + the 2 left in the budget of 5
    store = Store.open(out)
    after = store.strategy_state()
    for b, a in zip(before["population"]["islands"], after["population"]["islands"]):
        assert a[: len(b)] == b  # membership continued: nothing re-added or lost
    assert after["proposals"] == before["proposals"] + 2  # the resumed run went on proposing
    progs = {p["id"]: p for p in after["population"]["programs"]}
    assert all(progs[p["id"]]["island"] == p["island"] for p in before["population"]["programs"])
    assert all(p["status"] != "pending" for p in progs.values())  # interrupted evaluations were finished
    assert len([c for c in store.candidates() if c.note.get("kind") == "seed"]) == 1  # the seed was not re-proposed
    assert len(store.llm_calls()) == 5


def test_replay_of_a_run_replays_it_and_a_diverged_replay_exits_non_zero(tmp_path):
    """docs/llm.md's replay, as a user runs it: record against the scripted server, stop the server,
    replay (same candidates and prompts: the prompts' measured step times are not keyed), then replay
    asking for diffs, whose prompts the recording never saw: the run must fail, not exit 0."""
    script = [fence(GOOD), fence(GOOD.replace("0.9", "0.8"))]
    with ScriptedServer(script) as server:
        cfg = _config(tmp_path, server.url, max_calls=2)
        rec = _run([str(cfg), "--out", str(tmp_path / "a")])
        assert rec.returncode == 0, rec.stderr[-3000:]
    # the server is stopped: a request that left the machine would fail
    replay = _run([str(cfg), "--set", f"llm.replay={tmp_path / 'a'}", "--out", str(tmp_path / "b")])
    assert replay.returncode == 0, replay.stderr[-3000:]
    with Store.open(tmp_path / "a") as a, Store.open(tmp_path / "b") as b:
        assert [(c.id, c.source) for c in a.candidates()] == [(c.id, c.source) for c in b.candidates()]
        assert [c["prompt_hash"] for c in a.llm_calls()] == [c["prompt_hash"] for c in b.llm_calls()]
    diverged = _run([str(cfg), "--set", f"llm.replay={tmp_path / 'a'}", "--set", "strategy.edit=diff",
                     "--out", str(tmp_path / "c")])
    assert diverged.returncode != 0
    assert "never recorded" in diverged.stderr and "diverged" in diverged.stderr
