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
