"""Rollouts and repeats: evaluation rows a strategy asks for, stored one by one, aggregated
per candidate and stage, ranked by the mean; busy() while waiting; refusals of held-out tasks and
report seeds; strategy records; budgets on rows."""

from __future__ import annotations

import statistics

import pytest
from fake_eval import SEARCH_SUITE, MinibatchStrategy, make_minibatch_engine, minibatch_config

from optforge.search.context import StrategyContext
from optforge.store import Store


def test_minibatch_rollouts_and_repeats_are_rows_ranked_by_their_mean(ray_local, tmp_path, capsys):
    ctx = StrategyContext(seed=0)
    strategy, store = MinibatchStrategy(ctx), Store(tmp_path / "run")
    engine = make_minibatch_engine(minibatch_config(), strategy, store, records=ctx.records)
    summary = engine.run()
    assert summary.stop_reason == "strategy done" and strategy.busy_calls > 0
    # the progress line's counts split the proposals: three candidates, three rollouts each
    assert (engine.tally.n.candidates, engine.tally.n.proposed) == (3, 12)
    for cid in ("m0", "m1", "m2"):
        rows = store.evaluations(cid, "train")
        assert len(rows) == 4 and [r.rollout_id is None for r in rows] == [True, False, False, False]
        fits = [r.fitness for r in rows]
        agg = store.aggregate(cid, "train")
        per_task = [statistics.fmean(r.metrics["tasks"][t]["score"] for r in rows if t in r.metrics["tasks"])
                    for t in ("a", "b")]
        assert agg.n == 4 and agg.mean == pytest.approx(statistics.fmean(per_task))  # each task weighs once
        assert agg.sd == pytest.approx(statistics.stdev(fits)) and agg.sd > 0
        a_scores = [r.metrics["tasks"]["a"]["score"] for r in rows]
        assert agg.tasks["a"].n == 4 and agg.tasks["a"].mean == pytest.approx(statistics.fmean(a_scores))
        assert agg.tasks["b"].n == 3  # the minibatch rollout ran task a only
        minibatch, rep1, rep2 = store.rollouts(cid)
        assert minibatch.tasks == ("a",) and not minibatch.repeat
        # repeats: search seeds the candidate had not used, distinct from each other
        used = set(minibatch.seeds)
        assert rep1.repeat and rep2.repeat and not (set(rep1.seeds) & used) and not (set(rep2.seeds) & set(rep1.seeds))
        assert set(rep1.seeds) | set(rep2.seeds) <= set(SEARCH_SUITE.search_seeds)
        reused = store.evaluations(rollout_id=rep2.id)[0]
        assert reused.reuse_lr and reused.detail == "trace"
        assert reused.artifacts["lr_multipliers"] == {"a": 2.0, "b": 0.5}  # from the first train result
    assert [r.candidate.id for r in store.leaderboard("train")] == strategy.ranking()
    assert all(r.observed for r in store.rollouts())
    kept = store.records("summary")
    assert [r.candidate_id for r in kept] == ["m0", "m1", "m2"] and kept[0].data["candidate"] == "m0"
    _show_prints_mean_sd_and_n(store, capsys)


def _show_prints_mean_sd_and_n(store, capsys):
    from optforge.cli import main

    capsys.readouterr()
    assert main(["show", str(store.run_dir)]) == 0
    out = capsys.readouterr().out
    for r in store.leaderboard("train"):
        agg = r.evaluation.aggregate
        line = next(x for x in out.splitlines() if f" {r.candidate.id} " in x and "ok" in x)
        assert f"{agg.mean:+.3f}" in line and f"±{agg.sd:.3f}" in line and line.split()[-1] == "4", line
    assert "the mean over tasks of each task's mean over the rows that ran it" in out and "strategy records: summary 3" in out
    assert main(["show", str(store.run_dir), "--records", "--kind", "summary"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and listed[0].startswith("#1 summary [m0]")


@pytest.mark.parametrize("bad, why", [({"tasks": ["held_lm"], "seeds": [100]}, "held out"),
                                      ({"seeds": [3]}, "report seed"),
                                      ({"seeds": [100], "detail": "everything"}, "detail"),
                                      ({"new_seeds": 20}, "20 new search seeds asked")])
def test_a_refused_rollout_is_handed_back_and_the_run_goes_on(ray_local, tmp_path, bad, why):
    strategy, store = MinibatchStrategy(bad=bad), Store(tmp_path / "run")
    summary = make_minibatch_engine(minibatch_config(), strategy, store).run()
    assert summary.stop_reason == "strategy done" and store.meta("status") == "finished"
    [(cid, rollout_id, status, reason)] = strategy.refused
    assert cid == "m0" and status == "invalid" and why in reason
    kept = [r for r in store.rollouts(refused=True) if r.refused]
    assert [(r.id, r.candidate_id, r.observed) for r in kept] == [(rollout_id, "m0", True)] and why in kept[0].refused
    assert store.evaluations(rollout_id=rollout_id) == []  # nothing refused was evaluated
    assert kept[0] not in store.rollouts()  # nor counts as a rollout (its seeds were never used)
    assert store.events("rollout_refused")[0]["reason"] == kept[0].refused
    assert [len(store.evaluations(c, "train")) for c in ("m0", "m1", "m2")] == [4, 4, 4]  # the rest all ran


def test_a_rollout_of_an_unknown_candidate_is_refused_with_the_reason(ray_local, tmp_path):
    strategy, store = MinibatchStrategy(bad={"candidate_id": "nobody", "seeds": [100]}), Store(tmp_path / "run")
    assert make_minibatch_engine(minibatch_config(), strategy, store).run().stop_reason == "strategy done"
    assert strategy.refused[0][0] == "nobody" and "only a candidate the strategy has observed" in strategy.refused[0][3]


def test_max_evaluations_counts_rows(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    summary = make_minibatch_engine(minibatch_config(budget={"max_evaluations": 8}), MinibatchStrategy(),
                                    store).run()
    assert summary.stop_reason == "max_evaluations" and store.evaluation_count() == 8  # rows, not candidates


def test_rollout_requests_are_checked_before_they_are_stored(tmp_path):
    from optforge.rollouts import RolloutRefused, resolve
    from optforge.search.base import Rollout
    from optforge.types import Candidate, EvaluationResult, Status

    store = Store(tmp_path / "run")
    seen, unseen = Candidate.new("LR = 1\n", id="seen"), Candidate.new("LR = 2\n", id="unseen")
    store.add_proposals([seen, unseen], None)
    for cand in (seen, unseen):
        store.add_evaluation(cand, EvaluationResult(Status.OK, stage="train", metrics={
            "fitness": 0.2, "tasks": {"a": {"score": 0.2, "lr_mult": 1.0}, "b": {"score": 0.2}}}))
    store.mark_observed("seen", None)

    def check(rollout, **kw):
        return resolve(rollout, pseq=2, stage="train", store=store, suite=SEARCH_SUITE, **kw)

    assert check(Rollout.repeat("seen", 3)).seeds == (100, 101, 102)
    assert check(Rollout.repeat("seen", 2), reserved=[100, 101]).seeds == (102, 103)
    assert check(Rollout("seen", tasks=("a",), seeds=(105,), reuse_lr=True)).reuse_lr
    for bad, why in [(Rollout("unseen", seeds=(100,)), "observed with an ok train"),
                     (Rollout("seen", tasks=("held_lm",), seeds=(100,)), "held out"),
                     (Rollout("seen", tasks=("zz",), seeds=(100,)), "not in search suite"),
                     (Rollout("seen", seeds=(2,)), "report seed"),
                     (Rollout("seen", seeds=(0,)), "not a search seed"),
                     (Rollout("seen", seeds=(100, 100)), "repeat a seed"),
                     (Rollout("seen"), "either seeds"),
                     (Rollout.repeat("seen", 17), "17 new search seeds asked, 16 left"),
                     (Rollout("seen", seeds=(100,), reuse_lr=True), "no lr multiplier for b"),
                     (Rollout("seen", tasks=("a",), seeds=(100,), detail="all"), "detail")]:
        with pytest.raises(RolloutRefused, match=why):
            check(bad)
    with pytest.raises(RolloutRefused, match="tunes weight decay"):
        check(Rollout("seen", tasks=("a",), seeds=(100,), reuse_lr=True), tunes_wd=True)
