"""RayScheduler against a real local Ray: a cancelled evaluation takes its worker with it."""

from __future__ import annotations

import os
import time

from fake_eval import fake_evaluate, fake_source

from optforge.evaluators import EvalRequest
from optforge.scheduler import RayScheduler
from optforge.types import EvaluationResult


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_cancel_all_kills_the_worker_so_no_interrupted_task_leaves_it_half_set_up(ray_local, tmp_path):
    # A gentle cancel raises KeyboardInterrupt inside the task; landing in a first `import torch` it
    # left torch half-imported in a reused worker, and every later evaluation there crashed (a CI run)
    pidfile = tmp_path / "pid"
    sched = RayScheduler(fake_evaluate)
    sched.submit("job", EvalRequest(fake_source(1.0, f"# PIDFILE {pidfile}", "# HANG"), "smoke", suite="smoke"),
                 time.monotonic())
    assert _wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60), "the task never started"
    pid = int(pidfile.read_text())

    assert sched.cancel_all() == ["job"]
    assert len(sched) == 0
    assert _wait_for(lambda: not _alive(pid), 30), f"worker {pid} survived the cancel"

    # the cluster still evaluates (Ray started a new worker)
    sched.submit("next", EvalRequest(fake_source(0.5), "smoke", suite="smoke"), time.monotonic())
    done = []
    assert _wait_for(lambda: bool(done.extend(sched.next_completed(1.0)) or done), 60)
    assert done[0].job == "next" and done[0].error is None
    assert EvaluationResult.from_dict(done[0].output["result"]).fitness == 0.5
