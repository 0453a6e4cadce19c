"""Kill -9 of the driver mid-run, then resume: nothing finished is lost or repeated, and in
deterministic mode the store ends equal to an uninterrupted run's (timing fields aside)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fake_eval import WalkStrategy, make_engine, walk_config
from sigkill import kill_when

from optforge.store import Store

BUDGET = 14


def _content(store: Store) -> dict:
    """The store without timing fields."""
    evs = sorted((e.candidate_id, e.stage, e.status.value, e.fitness, e.seeds, e.feedback,
                  tuple(sorted((k, str(v)) for k, v in e.metrics.items() if k != "wall_seconds")))
                 for e in store.evaluations())
    return {
        "candidates": [(c.id, c.source, c.parents, c.strategy) for c in store.candidates()],
        "evaluations": evs,
        "observed": sorted(store.observed_ids()),
        "state": store.strategy_state(),
        "status": store.meta("status"),
    }


def _snapshot(src: Path, dst: Path) -> None:
    """What a kill -9 leaves: exactly the committed transactions (read through a second connection)."""
    dst.mkdir(parents=True)
    with sqlite3.connect(str(src / "run.db")) as a, sqlite3.connect(str(dst / "run.db")) as b:
        a.backup(b)


def test_resume_from_any_committed_state_is_exact(ray_local, tmp_path):
    """Snapshots of the store taken at several moments of a run (as a kill -9 would leave it), each
    resumed, end equal to the uninterrupted run."""
    live = tmp_path / "live"
    snaps: list[Path] = []

    def snapshot(progress):
        if progress.done and len(snaps) < 3:
            snaps.append(tmp_path / f"snap{len(snaps)}")
            _snapshot(live, snaps[-1])

    make_engine(walk_config(BUDGET), WalkStrategy(seed=7), Store(live), progress=snapshot).run()
    expected = _content(Store.open(live))
    assert len(snaps) >= 2
    for snap in snaps:
        with Store.open(snap) as st:
            before = {(e.candidate_id, e.stage): e.created for e in st.evaluations()}
            assert len(before) < 2 * BUDGET
        store = Store(snap)
        make_engine(walk_config(BUDGET), WalkStrategy(seed=7), store).run()
        assert _content(store) == expected, snap
        after = {(e.candidate_id, e.stage): e.created for e in store.evaluations()}
        assert all(after[k] == t for k, t in before.items())


@pytest.mark.slow
def test_sigkill_then_resume_is_exact(ray_local, tmp_path):
    killed = tmp_path / "killed"
    kill_when("driver.py", killed, lambda st: len(st.evaluations(stage="train")) >= 4, ray_local, str(BUDGET))
    with Store.open(killed) as st:
        before = {(e.candidate_id, e.stage): e.created for e in st.evaluations()}
        assert st.meta("status") == "running"  # it really died mid-run
        assert len(st.candidates()) < BUDGET or len(st.observed_ids()) < BUDGET

    resumed_store = Store(killed)
    summary = make_engine(walk_config(BUDGET), WalkStrategy(seed=7), resumed_store).run()
    assert summary.stop_reason == "max_candidates" and not summary.interrupted
    after = {(e.candidate_id, e.stage): e.created for e in resumed_store.evaluations()}
    assert all(after[k] == t for k, t in before.items())  # no finished evaluation lost or re-run
    assert len(resumed_store.candidates()) == BUDGET and len(resumed_store.evaluations()) == 2 * BUDGET

    # a second resume of a finished run does nothing
    again = make_engine(walk_config(BUDGET), WalkStrategy(seed=7), Store(killed)).run()
    assert again.proposed == BUDGET and len(Store.open(killed).evaluations()) == 2 * BUDGET

    reference = Store(tmp_path / "uninterrupted")
    make_engine(walk_config(BUDGET), WalkStrategy(seed=7), reference).run()
    assert _content(resumed_store) == _content(reference)


def test_a_reopened_search_continues_and_decides_its_funnel_anew(ray_local, tmp_path):
    """A run stopped by max_candidates, reopened (as `--resume --set budget.max_candidates=...` does):
    the strategy goes on from its stored state, and the funnel is decided again over the larger pool,
    so a candidate promoted from the smaller pool that no longer enters is not promoted any more."""
    from fake_eval import ListStrategy, fake_source

    from optforge.config import config_from_dict
    from optforge.resume import reopen_search

    def config(budget):
        return config_from_dict({"strategy": {"name": "list"}, "slots": 1, "deterministic": True, "eval_timeout_s": 30,
                                 "funnel": {"top_k": 1}, "budget": {"max_candidates": budget}})

    sources = [fake_source(0.3), fake_source(0.8), fake_source(0.1)]
    store = Store(tmp_path / "run")
    first = make_engine(config(1), ListStrategy(sources), store).run()
    assert first.stop_reason == "max_candidates" and first.promoted == ["c0"]
    heldout_runs = len(store.evaluations(stage="heldout"))
    reopen_search(store, overrides=["budget.max_candidates=2"])
    strategy = ListStrategy(sources)
    second = make_engine(config(2), strategy, store).run()
    assert second.stop_reason == "max_candidates" and second.proposed == 2
    assert [s[0] for s in strategy.seen] == ["c0", "c1"]  # c0 observed before, from the stored state
    assert second.promoted == ["c1"]  # top_k 1 of the larger pool; c0's old decisions were dropped
    assert {p.candidate_id for p in store.promotions("train_fresh_seeds")} == {"c1"}
    assert len(store.evaluations(stage="heldout")) == heldout_runs + 1  # c1 only: the references were cached
    assert store.meta("status") == "finished" and [e["overrides"] for e in store.events("search_reopened")] == \
        [["budget.max_candidates=2"]]


def test_a_resume_may_relax_the_baselines_check_it_was_told_to_set():
    # the start-of-run check's refusal says "set `baselines_check: warn`": a resume must accept that
    from optforge.config import config_from_dict
    from optforge.resume import refused_overrides

    stored = config_from_dict({"suite": "smoke", "stages": ["smoke"]})
    assert refused_overrides(stored, config_from_dict({"suite": "smoke", "stages": ["smoke"]},
                                                      ["baselines_check=warn"])) == []
    assert refused_overrides(stored, config_from_dict({"suite": "smoke", "stages": ["smoke"]}, ["seed=3"])) == ["seed: 0 -> 3"]
