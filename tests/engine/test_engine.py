"""Engine on a real local Ray with a trivial evaluate function (tests/engine/fake_eval.py)."""

from __future__ import annotations

import pytest
from fake_eval import ListStrategy, WalkStrategy, fake_source, make_engine, walk_config

from optforge.config import config_from_dict
from optforge.store import Store


def _config(**extra):
    data = {"strategy": {"name": "list"}, "slots": 2, "deterministic": True, "stages": ["smoke", "train"],
            "eval_timeout_s": 30}
    data.update(extra)
    return config_from_dict(data)


def test_every_candidate_stored_ranked_and_observed_in_order(ray_local, tmp_path):
    # later candidates finish first: the strategy must still observe c0, c1, c2, ... in order
    sources = [fake_source(0.1, "# SLOW 0.6"), fake_source(0.7), fake_source(-0.4, "# SLOW 0.3"), fake_source(0.3)]
    strategy, store = ListStrategy(sources), Store(tmp_path / "run")
    summary = make_engine(_config(), strategy, store).run()
    assert summary.stop_reason == "strategy done" and not summary.interrupted
    assert [s[0] for s in strategy.seen] == ["c0", "c1", "c2", "c3"]
    assert all(s[1] == "train" for s in strategy.seen)  # the final search stage is what it observes
    ranked = [r.candidate.id for r in store.leaderboard("train")]
    assert ranked == ["c1", "c3", "c0", "c2"]
    assert store.best().candidate.id == "c1"
    assert {e.stage for e in store.evaluations()} == {"smoke", "train"} and len(store.evaluations()) == 8
    assert store.observed_ids() == {"c0", "c1", "c2", "c3"}
    assert store.strategy_state()["i"] == 4 and len(store.strategy_state()["seen"]) == 4
    assert store.meta("status") == "finished" and store.meta("versions")["torch"]


def test_identical_sources_are_evaluated_once(ray_local, tmp_path):
    same = fake_source(0.5, "# SLOW 0.5")
    store = Store(tmp_path / "run")
    make_engine(_config(), ListStrategy([same, same, fake_source(0.2), same]), store).run()
    evs = store.evaluations(stage="train")
    assert len(evs) == 4
    fresh = [e for e in evs if e.cached_from is None]
    assert sorted(e.candidate_id for e in fresh) == ["c0", "c2"]  # c1 waited on c0 in flight, c3 hit the cache
    assert all(e.fitness == 0.5 for e in evs if e.candidate_id != "c2")


def test_the_same_program_reformatted_shares_the_train_result(ray_local, tmp_path):
    # other comments and layout, same syntax tree: the second is not trained again
    a = fake_source(0.4, "# FP abc")
    b = "# a comment the LLM added\n" + a.replace("FITNESS = 0.4", "FITNESS   =   0.4  # same value").replace("# FP abc", "# FP xyz")
    store = Store(tmp_path / "run")
    strategy = ListStrategy([a, b, fake_source(0.1, "# FP abc")])
    make_engine(_config(slots=1), strategy, store).run()
    twin = store.evaluation("c1", "train")
    assert twin.cached_from == "c0" and "the same program as candidate c0" in twin.feedback
    assert store.evaluation("c1", "smoke").cached_from is None  # the smoke stage itself did run
    assert [e["candidate"] for e in store.events("duplicate")] == ["c1"]
    assert strategy.seen[1][:3] == ["c1", "train", "ok"]


def test_a_shared_sandbox_fingerprint_never_lends_a_result(ray_local, tmp_path):
    # a result is lent only for identical normalised source: two different programs whose smoke
    # fingerprints agree (evidence a rule controls, e.g. by recognising the fingerprint's set-up) are
    # each trained and keep their own result
    honest, gamer = fake_source(-0.3, "# FP same"), fake_source(0.9, "# FP same")
    store = Store(tmp_path / "run")
    make_engine(_config(slots=1), ListStrategy([gamer, honest]), store).run()
    assert store.evaluation("c0", "smoke").artifacts["fingerprint"] == store.evaluation("c1", "smoke").artifacts["fingerprint"]
    lent = store.evaluation("c1", "train")
    assert lent.cached_from is None and lent.fitness == -0.3
    assert store.events("duplicate") == []


def test_program_hash_ignores_comments_and_layout_only():
    from optforge.program_identity import program_hash

    base = "LR = 1e-3\n\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
    same = "# rewritten\nLR = 1e-3\ndef update(p, g, state, ctx):  # the step\n  return -ctx.lr*g\n"
    assert program_hash(base) == program_hash(same)
    for other in (base.replace("1e-3", "2e-3"), base.replace("-ctx.lr * g", "-ctx.lr * g.sign()"),
                  base.replace("state", "st")):
        assert program_hash(other) != program_hash(base)
    assert program_hash("def (") != program_hash("def  (")  # unparseable: the exact text


def test_failed_proposals_are_stored_and_observed_not_evaluated(ray_local, tmp_path):
    strategy = ListStrategy([fake_source(0.2), "not python ((", fake_source(0.1)],
                            notes=[{}, {"status": "invalid", "reason": "unparseable LLM output"}, {}])
    store = Store(tmp_path / "run")
    make_engine(_config(), strategy, store).run()
    ev = store.evaluation("c1", "smoke")
    assert ev.status.value == "invalid" and "unparseable" in ev.feedback
    assert store.evaluation("c1", "train") is None
    assert [s[:3] for s in strategy.seen] == [["c0", "train", "ok"], ["c1", "smoke", "invalid"], ["c2", "train", "ok"]]


def test_smoke_failure_stops_the_pipeline_and_evaluator_errors_are_statuses(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    strategy = ListStrategy([fake_source(0.2, "# CRASH"), fake_source(0.2, "# RAISE"), fake_source(0.4)])
    summary = make_engine(_config(), strategy, store).run()
    assert store.evaluation("c0", "smoke").status.value == "crashed" and store.evaluation("c0", "train") is None
    raised = store.evaluation("c1", "smoke")
    assert raised.status.value == "crashed" and "evaluator bug" in raised.artifacts["exception"]
    assert summary.best == ("c2", 0.4)


def test_a_crashed_warm_start_stops_the_run_at_once_with_its_reason(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    sources = [fake_source(0.2, "# CRASH")] + [fake_source(0.1 * i, "# SLOW 0.3") for i in range(1, 9)]
    strategy = ListStrategy(sources, notes=[{"warm_start": True, "seed": "adamw"}] + [{}] * 8)
    summary = make_engine(_config(), strategy, store).run()
    assert summary.failure == "warm start c0 (adamw) ended crashed at smoke: the rule raised at line 3"
    assert store.meta("status") == "failed" and store.meta("failure") == summary.failure
    assert [e["reason"] for e in store.events("failed")] == [summary.failure]
    assert len(store.evaluations()) < 2 * len(sources)  # stopped, not run to the end


@pytest.mark.parametrize("marker", ["# DIVERGE", "# CRASH"])
def test_a_diverged_warm_start_or_a_crashed_candidate_is_a_result(ray_local, tmp_path, marker):
    store = Store(tmp_path / "run")
    warm = {"warm_start": True} if marker == "# DIVERGE" else {}
    strategy = ListStrategy([fake_source(0.2, marker), fake_source(0.4)], notes=[warm, {}])
    summary = make_engine(_config(), strategy, store).run()
    assert not summary.failure and store.meta("status") == "finished" and summary.best == ("c1", 0.4)


def test_start_failure_rule():
    from optforge.engine import start_failure
    from optforge.types import Candidate, EvaluationResult, Status

    warm = Candidate.new("x", id="w", note={"warm_start": True})
    ref = Candidate.new("x", id="ref-adamw", note={"role": "reference", "seed": "adamw"})
    plain = Candidate.new("x", id="p")
    for status in ("invalid", "crashed", "lost"):
        r = EvaluationResult.failure(status, "why")
        assert start_failure(warm, r, "smoke", "smoke") == f"warm start w ended {status} at smoke: why"
        assert start_failure(ref, r, "heldout", "smoke") == f"reference ref-adamw ended {status} at heldout: why"
        assert start_failure(warm, r, "train", "smoke") is None  # a warm start is judged at smoke
        assert start_failure(plain, r, "smoke", "smoke") is None
    for status in ("diverged", "timeout", "memory"):
        assert start_failure(warm, EvaluationResult.failure(status, "why"), "smoke", "smoke") is None


def test_a_hanging_candidate_times_out_without_stalling_other_slots(ray_local, tmp_path):
    sources = [fake_source(0.0, "# HANG")] + [fake_source(0.1 * i, "# SLOW 0.2") for i in range(1, 6)]
    store = Store(tmp_path / "run")
    # a limit far above the others' 1 s of sleeps, so that a loaded machine cannot reorder them
    make_engine(_config(eval_timeout_s=20.0, stages=["train"]), ListStrategy(sources), store).run()
    hang = store.evaluation("c0", "train")
    assert hang.status.value == "timeout" and "engine limit" in hang.feedback
    others = [store.evaluation(f"c{i}", "train") for i in range(1, 6)]
    assert all(e.ok for e in others), [(e.status, e.feedback[:200], e.wall_s) for e in others]
    # the five others ran in the second slot while c0 hung: all were stored before the timeout fired
    assert max(e.created for e in others) < hang.created


def test_max_candidates_budget_stops_proposals(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    summary = make_engine(walk_config(5, deterministic=False), WalkStrategy(seed=1, slow=0.05), store).run()
    assert summary.stop_reason == "max_candidates"
    assert summary.proposed == 5 and len(store.evaluations(stage="train")) == 5
    assert store.observed_ids() == {f"w{i}" for i in range(5)}


def test_a_lost_worker_is_retried(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    flaky = tmp_path / "died-once"
    cfg = _config(stages=["train"], retries=1)
    make_engine(cfg, ListStrategy([fake_source(0.3, f"# FLAKY {flaky}"), fake_source(0.1)]), store).run()
    retried = store.evaluation("c0", "train")
    assert retried.ok and retried.attempts == 2 and flaky.exists()  # its worker died once, the retry worked
    assert [e["candidate"] for e in store.events("lost")] == ["c0"]
    assert store.evaluation("c1", "train").ok


@pytest.mark.slow
def test_a_worker_that_always_dies_ends_lost_and_is_not_cached(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    make_engine(_config(stages=["train"], retries=1), ListStrategy([fake_source(0.2, "# DIE")]), store).run()
    lost = store.evaluation("c0", "train")
    assert lost.status.value == "lost" and lost.attempts == 2
    from optforge.store import RequestKey

    assert store.cached(RequestKey(store.candidate("c0").content_hash, "train", "train", "fake-1", "selection")) is None


def test_ctrl_c_leaves_a_resumable_store(ray_local, tmp_path):
    sources = [fake_source(0.1 * i, "# SLOW 0.3") for i in range(8)]
    store = Store(tmp_path / "run")

    def interrupt_after_three(progress):
        if progress.done >= 3:
            raise KeyboardInterrupt

    summary = make_engine(_config(stages=["train"]), ListStrategy(sources), store, progress=interrupt_after_three).run()
    assert summary.interrupted and store.meta("status") == "interrupted"
    done_before = {e.candidate_id: e.created for e in store.evaluations()}
    assert 3 <= len(done_before) < 8
    resumed = make_engine(_config(stages=["train"]), ListStrategy(sources), Store(tmp_path / "run")).run()
    assert not resumed.interrupted and resumed.stop_reason == "strategy done"
    after = {e.candidate_id: e.created for e in store.evaluations()}
    assert sorted(after) == [f"c{i}" for i in range(8)]
    assert all(after[c] == t for c, t in done_before.items())  # nothing finished was re-run
    assert len(store.candidates()) == 8  # nothing proposed twice


def test_deterministic_runs_are_identical(ray_local, tmp_path):
    def run(name):
        store = Store(tmp_path / name)
        make_engine(walk_config(10), WalkStrategy(seed=3), store).run()
        return [(c.id, c.source) for c in store.candidates()], store.strategy_state()

    assert run("a") == run("b")


def test_the_strategy_close_hook_runs_once_after_the_search_and_before_the_funnel(ray_local, tmp_path):
    """MoH holds sandboxed procedure runs outside its state: close() is its chance to end them."""
    store = Store(tmp_path / "run")

    class Closing(ListStrategy):
        closed: list = []

        def close(self) -> None:
            # the search rows are stored, the funnel's are not yet
            self.closed.append(sorted({ev.stage for ev in store.evaluations()}))

    strategy = Closing([fake_source(0.2), fake_source(0.5)])
    config = _config(stages=["smoke", "train", "train_fresh_seeds"])
    make_engine(config, strategy, store).run()
    assert strategy.closed == [["smoke", "train"]]
    assert "train_fresh_seeds" in {ev.stage for ev in store.evaluations()}
