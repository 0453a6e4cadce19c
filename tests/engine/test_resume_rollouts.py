"""Kill -9 of the driver in the middle of repeats, then resume: no evaluation row lost or run twice,
every rollout answered once, and the store ends equal to an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_eval import MinibatchStrategy, make_minibatch_engine, minibatch_config

from optforge.store import Store

HERE = Path(__file__).resolve().parent


def _content(store: Store) -> dict:
    rows = sorted((e.candidate_id, e.stage, e.rollout_id or 0, e.seeds, e.fitness, e.tasks or ()) for e in store.evaluations())
    rollouts = [(r.pseq, r.candidate_id, r.tasks, r.seeds, r.reuse_lr, r.observed) for r in store.rollouts()]
    return {"rows": rows, "rollouts": rollouts, "state": store.strategy_state(), "status": store.meta("status")}


def _wait_for_rollout_rows(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"driver exited early: {proc.stderr.read().decode()[-2000:]}"
        if (run_dir / "run.db").exists():
            try:
                with Store.open(run_dir) as st:
                    if sum(e.rollout_id is not None for e in st.evaluations()) >= n:
                        return
            except sqlite3.OperationalError:  # the driver is still creating the schema
                pass
        time.sleep(0.05)
    raise AssertionError("the driver made no progress")


@pytest.mark.slow
def test_sigkill_in_the_middle_of_repeats_loses_and_repeats_nothing(ray_local, tmp_path):
    address = ray_local.get_runtime_context().gcs_address
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(HERE / "minibatch_driver.py"), str(killed), address],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_rollout_rows(killed, 2, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with Store.open(killed) as st:
        assert st.meta("status") == "running"  # it really died mid-run
        before = {e.id: (e.candidate_id, e.rollout_id, e.created) for e in st.evaluations()}
        assert not all(r.observed for r in st.rollouts()) or len(st.rollouts()) < 9

    store = Store(killed)
    summary = make_minibatch_engine(minibatch_config(eval_timeout_s=600), MinibatchStrategy(slow=0.4), store).run()
    assert summary.stop_reason == "strategy done"
    after = {e.id: (e.candidate_id, e.rollout_id, e.created) for e in store.evaluations()}
    assert all(after[k] == v for k, v in before.items())  # nothing finished was lost or re-run
    assert {e.status.value for e in store.evaluations()} == {"ok"}, [(e.candidate_id, e.feedback) for e in store.evaluations()]
    rollouts = store.rollouts()
    assert len(rollouts) == 9 and all(r.observed for r in rollouts)
    assert all(len(store.evaluations(rollout_id=r.id)) == 1 for r in rollouts)  # each answered exactly once

    reference = Store(tmp_path / "uninterrupted")
    make_minibatch_engine(minibatch_config(eval_timeout_s=600), MinibatchStrategy(slow=0.4), reference).run()
    assert _content(store) == _content(reference)
