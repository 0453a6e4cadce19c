"""Kill -9 of the driver in the middle of repeats, then resume: no evaluation row lost or run twice,
every rollout answered once, and the store ends equal to an uninterrupted run's. Killed with a refused
rollout stored but not yet observed, the resumed run hands that refusal back once."""

from __future__ import annotations

import pytest
from fake_eval import MinibatchStrategy, make_minibatch_engine, minibatch_config
from sigkill import kill_when

from optforge.store import Store


def _content(store: Store) -> dict:
    rows = sorted((e.candidate_id, e.stage, e.rollout_id or 0, e.seeds, e.fitness, e.tasks or ()) for e in store.evaluations())
    rollouts = [(r.pseq, r.candidate_id, r.tasks, r.seeds, r.reuse_lr, r.observed) for r in store.rollouts()]
    return {"rows": rows, "rollouts": rollouts, "state": store.strategy_state(), "status": store.meta("status")}


@pytest.mark.slow
def test_sigkill_in_the_middle_of_repeats_loses_and_repeats_nothing(ray_local, tmp_path):
    killed = tmp_path / "killed"
    kill_when("minibatch_driver.py", killed, lambda st: sum(e.rollout_id is not None for e in st.evaluations()) >= 2,
              ray_local)
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


def test_a_refusal_stored_but_not_observed_at_sigkill_is_handed_back_once_on_resume(ray_local, tmp_path):
    from refusal_driver import FITS, REFUSED

    killed = tmp_path / "killed"
    kill_when("refusal_driver.py", killed, lambda st: any(r.refused and not r.observed for r in st.rollouts(refused=True)),
              ray_local)
    with Store.open(killed) as st:
        [refused] = [r for r in st.rollouts(refused=True) if r.refused]
        assert st.meta("status") == "running" and not refused.observed and "held out" in refused.refused

    strategy, store = MinibatchStrategy(fits=FITS, bad=REFUSED), Store(killed)
    summary = make_minibatch_engine(minibatch_config(eval_timeout_s=600), strategy, store).run()
    assert summary.stop_reason == "strategy done"
    assert [(r[0], r[1], r[2]) for r in strategy.refused] == [("m0", refused.id, "invalid")]  # once, not twice
    assert store.strategy_state()["refused"] == [list(r) for r in strategy.refused]
    assert [(r.id, r.observed) for r in store.rollouts(refused=True) if r.refused] == [(refused.id, True)]
    assert store.evaluations(rollout_id=refused.id) == [] and len(store.events("rollout_refused")) == 1
    assert all(r.observed for r in store.rollouts()) and len(store.rollouts()) == 3  # the rest all ran
