"""The live progress of a run (`RunProgress`), as the user reads it after a resume: every count is the
run's, over all its sessions, as `show` and the summary count it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fake_eval import WalkStrategy, make_engine, walk_config

from optforge.store import Store

BUDGET = 12


def _snapshot(src: Path, dst: Path) -> None:
    """What a kill -9 leaves: exactly the committed transactions (read through a second connection)."""
    dst.mkdir(parents=True)
    with sqlite3.connect(str(src / "run.db")) as a, sqlite3.connect(str(dst / "run.db")) as b:
        a.backup(b)


def test_progress_after_a_resume_counts_proposals_and_evaluations_over_the_whole_run(ray_local, tmp_path):
    live, snap = tmp_path / "live", tmp_path / "snap"

    def snapshot(progress):
        if progress.done >= 6 and not snap.exists():
            _snapshot(live, snap)

    make_engine(walk_config(BUDGET), WalkStrategy(seed=7), Store(live), progress=snapshot).run()
    with Store.open(snap) as st:
        stored_evaluations, stored_proposals = len(st.evaluations()), st.strategy_proposal_count()
        stored_failures = sum(n for status, n in st.status_counts().items() if status != "ok")
    assert 6 <= stored_evaluations < 2 * BUDGET and stored_proposals < BUDGET + 4

    seen = []
    store = Store(snap)
    make_engine(walk_config(BUDGET), WalkStrategy(seed=7), store, progress=seen.append).run()
    first, last = seen[0], seen[-1]
    # the first line of the resumed session already holds what the killed one did, proposals and
    # evaluations alike (not the stored proposals beside this session's evaluations)
    assert first.proposed >= stored_proposals and first.done >= stored_evaluations
    assert sum(first.failures.values()) >= stored_failures
    assert [p.done for p in seen] == sorted(p.done for p in seen)  # never goes back
    final = {"proposed": store.strategy_proposal_count(), "done": len(store.evaluations()),
             "failures": {k: v for k, v in store.status_counts().items() if k != "ok"}}
    assert last.proposed <= final["proposed"] and last.done <= final["done"]
    assert all(last.failures.get(k, 0) <= v for k, v in final["failures"].items())
    assert all(p.done <= 2 * p.proposed for p in seen)  # two stages a candidate: the line adds up


def test_a_killed_run_is_killed_to_ls_show_and_report_and_running_while_it_lived(ray_local, tmp_path, capsys):
    from sigkill import kill_when

    from optforge.cli import main
    from optforge.report import build_report
    from optforge.run_progress import KILLED, RUNNING, run_activity

    runs = tmp_path / "runs"
    run = runs / "killed"
    runs.mkdir()
    while_alive = []

    def ready(st):
        if len(st.evaluations(stage="train")) < 2:
            return False
        while_alive.append(run_activity(st))
        return True

    kill_when("driver.py", run, ready, ray_local, str(BUDGET))
    assert while_alive == [RUNNING]
    with Store.open(run) as st:
        assert st.meta("status") == "running"  # nothing told the store the run ended
        assert run_activity(st) == KILLED  # at once: the process recorded for the run is gone

    assert main(["ls", str(runs)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(str(run)))
    assert row.split()[2] == "killed", row
    assert main(["show", str(run)]) == 0
    assert (f"status killed (its process is gone without a clean end; continue it with optforge run --resume {run})"
            in capsys.readouterr().out)
    header = build_report(run)
    assert "<dt>status</dt><dd>killed <small>(its process is gone without a clean end" in header


def test_a_recorded_process_is_alive_only_while_it_is_that_process(tmp_path):
    import os
    import signal
    import subprocess
    import time

    from optforge.run_progress import KILLED, LIVE_S, RUNNING, process_alive, run_activity, this_process

    proc = subprocess.Popen(["sleep", "60"])
    try:
        me = this_process()
        other = {**me, "pid": proc.pid, "started": None}
        assert process_alive(me) is True and process_alive(other) is True
        if me["started"] is not None:  # /proc: a pid now held by another process is not the run's
            assert process_alive({**me, "started": me["started"] - 1}) is False
        assert process_alive({**me, "host": me["host"] + "-elsewhere"}) is None  # cannot ask another host
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert process_alive(other) is False

    # another host's process: its store's write time decides
    with Store(tmp_path / "run") as st:
        st.set_meta(status="running", process={**me, "host": me["host"] + "-elsewhere"})
        assert run_activity(st) == RUNNING
        assert run_activity(st, now=time.time() + 2 * LIVE_S) == KILLED
        st.set_meta(process=other)  # this host's, gone: killed whatever the write time says
        assert run_activity(st) == KILLED
        st.set_meta(status="finished")
        assert run_activity(st) == "finished"
