"""Kill -9 of a MoH run while an inner procedure run waits on an evaluation, then resume: the run
restarts from its start with the same seed, its earlier calls are answered from the log (no new LLM
spend, no evaluation run twice), and the run ends as an uninterrupted one does. Slow (a minute)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from moh_harness import RESUME_PARAMS, SLOW, outcome, run_moh, script

from optforge.llm.scripted import ScriptedServer
from optforge.store import Store

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _inner_run_in_the_middle(run_dir: Path) -> dict | None:
    """The inner run on the stack once it has answers logged and waits on an evaluation, else None."""
    if not (run_dir / "run.db").exists():
        return None
    try:
        with Store.open(run_dir) as st:
            state = st.strategy_state() or {}
    except sqlite3.OperationalError:  # the driver is still creating the schema
        return None
    inner = [r for r in state.get("stack", []) if r["level"] == "inner"]
    return inner[0] if inner and len(inner[0]["log"]) >= 2 and inner[0]["pending"] else None


def test_sigkill_in_an_inner_run_then_resume_spends_and_evaluates_nothing_twice(ray_local, tmp_path):
    address = ray_local.get_runtime_context().gcs_address
    killed = tmp_path / "killed"
    with ScriptedServer(script(SLOW)) as server:
        proc = subprocess.Popen([sys.executable, str(HERE / "moh_driver.py"), str(killed), address, server.url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline, spec = time.monotonic() + 300, None
            while spec is None:
                assert proc.poll() is None, f"driver exited early: {proc.stderr.read().decode()[-3000:]}"
                assert time.monotonic() < deadline, "the driver never got into the middle of an inner run"
                time.sleep(0.1)
                spec = _inner_run_in_the_middle(killed)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        with Store.open(killed) as st:
            assert st.meta("status") == "running"  # it really died mid-run
            rows_before = {e.id: (e.candidate_id, e.stage, e.rollout_id) for e in st.evaluations()}
        served_before = server.served

        store, strategy = run_moh(killed, {"api_base": server.url}, RESUME_PARAMS)
        served_resumed = server.served - served_before
    assert strategy.stop_reason == "n_iterations (1) done", store.meta("failure")
    rows_after = {e.id: (e.candidate_id, e.stage, e.rollout_id) for e in store.evaluations()}
    assert all(rows_after[k] == v for k, v in rows_before.items())
    assert len(set(rows_after.values())) == len(rows_after)  # no evaluation ran twice
    resumed_run = next(r for r in (x.data for x in store.records("procedure_run")) if r["run"] == spec["run_id"])
    assert resumed_run["seed"] == spec["seed"] and resumed_run["status"] == "ok"
    assert resumed_run["calls"] > len(spec["log"])  # it went on past where it was killed

    with ScriptedServer(script(SLOW)) as server:
        reference, _ = run_moh(tmp_path / "reference", {"api_base": server.url}, RESUME_PARAMS)
        served_reference = server.served
    assert served_before + served_resumed == served_reference  # the replayed calls cost nothing
    assert outcome(store) == outcome(reference)
