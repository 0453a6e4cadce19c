"""Budgets never overshoot (optforge.budgets): the row and CPU budgets count what is in flight, and at
budget.max_seconds queued evaluations never start and running ones are cut, the run saying so."""

from __future__ import annotations

import pytest
from fake_eval import ListStrategy, MinibatchStrategy, fake_source, make_engine, make_minibatch_engine, minibatch_config

from optforge import budgets
from optforge.config import BudgetConfig, config_from_dict
from optforge.store import Store


def test_max_evaluations_is_never_exceeded_with_two_slots(ray_local, tmp_path):
    # 3 candidates x (smoke, train) + 3 x 3 rollouts = 15 rows asked for; 2 run at once
    store = Store(tmp_path / "run")
    summary = make_minibatch_engine(minibatch_config(budget={"max_evaluations": 8}), MinibatchStrategy(),
                                    store).run()
    assert summary.stop_reason == "max_evaluations"
    assert store.evaluation_count(stages=["smoke", "train"]) == 8
    assert summary.not_started >= 1 and summary.cut == 0
    assert f"{summary.not_started} queued evaluation(s) not started" in summary.budget_note()


def test_max_train_cpu_s_is_never_exceeded(ray_local, tmp_path):
    # each rollout row costs 1.5 CPU s (fake_eval); stage rows record none (0): 2 rollouts fit in 4.0, 3 do
    # not. The first rollout's cost is unknown, so it runs alone; the next are estimated from it.
    store = Store(tmp_path / "run")
    summary = make_minibatch_engine(minibatch_config(budget={"max_train_cpu_s": 4.0}), MinibatchStrategy(),
                                    store).run()
    assert summary.stop_reason == "max_train_cpu_s"
    assert store.train_cpu_seconds() == pytest.approx(3.0)
    rows = store.evaluations()
    assert len([e for e in rows if e.rollout_id is None]) == 6 and len([e for e in rows if e.rollout_id]) == 2


def test_at_max_seconds_queued_evaluations_never_start_and_running_ones_are_cut(ray_local, tmp_path):
    cfg = config_from_dict({"strategy": {"name": "list"}, "slots": 2, "deterministic": True,
                            "stages": ["smoke", "train"], "eval_timeout_s": 600, "budget": {"max_seconds": 1.0}})
    strategy, store = ListStrategy([fake_source(0.1 * i, "# SLOW 60") for i in range(6)]), Store(tmp_path / "run")
    summary = make_engine(cfg, strategy, store).run()
    assert summary.stop_reason == "max_seconds" and summary.cut == 2
    assert summary.not_started + summary.cut == 6  # every proposal's smoke evaluation, none of them stored
    assert store.evaluations() == [] and strategy.seen == [] and store.observed_ids() == set()
    stopped = store.events("search_stopped")
    assert len(stopped) == 1 and stopped[0]["reason"] == "max_seconds"
    assert {c["candidate"] for c in stopped[0]["cut"]} == {"c0", "c1"}
    assert "2 running evaluation(s) cut at budget.max_seconds" in summary.budget_note()


def test_a_timed_out_evaluation_counts_its_slot_time_as_cpu(ray_local, tmp_path):
    # the hanging c0 reports no CPU; it held its slot for the 2 s limit, which is past max_train_cpu_s
    # of 1.0, so c1 never starts. The charge is stored, so a resumed run counts it the same.
    cfg = config_from_dict({"strategy": {"name": "list"}, "slots": 1, "deterministic": True, "stages": ["train"],
                            "eval_timeout_s": 2.0, "budget": {"max_train_cpu_s": 1.0}})
    store = Store(tmp_path / "run")
    summary = make_engine(cfg, ListStrategy([fake_source(0.0, "# HANG"), fake_source(0.1)]), store).run()
    assert summary.stop_reason == "max_train_cpu_s"
    (row,) = store.evaluations()
    assert row.candidate_id == "c0" and row.status.value == "timeout" and row.wall_s >= 2.0
    assert row.metrics["cpu_seconds"] == pytest.approx(row.wall_s, abs=1e-3)
    assert store.train_cpu_seconds() == pytest.approx(row.metrics["cpu_seconds"])


def test_the_cpu_charged_for_a_row():
    from optforge.types import EvaluationResult, Status

    crashed = EvaluationResult.failure(Status.CRASHED, "the rule raised")
    assert budgets.charged_cpu_s(crashed, wall_s=30.0) == 0.0  # nothing measured, nothing known
    crashed.metrics["cpu_seconds"] = 12.5
    assert budgets.charged_cpu_s(crashed, wall_s=30.0) == 12.5  # what it reports
    timeout = EvaluationResult.failure(Status.TIMEOUT, "past the limit")
    assert budgets.charged_cpu_s(timeout, wall_s=30.0) == 30.0  # its slot's time, one CPU
    timeout.metrics["cpu_seconds"] = 4.0
    assert budgets.charged_cpu_s(timeout, wall_s=30.0) == 4.0  # a measurement wins


def test_admit_counts_rows_and_cpu_in_flight():
    b = BudgetConfig(max_evaluations=3, max_train_cpu_s=10.0)
    spend = budgets.SearchSpend(rows=1, cpu_s=4.0)
    assert budgets.admit(b, spend, None) == ""  # unknown cost, nothing in flight: it may start alone
    spend.start(1, None)
    assert budgets.admit(b, spend, None) == budgets.WAIT  # unknown cost while another runs: later
    assert budgets.admit(b, spend, 6.0) == ""  # 4 spent + 6 = 10: fits
    assert budgets.admit(b, spend, 6.5) == "max_train_cpu_s"
    spend.start(2, 3.0)
    assert budgets.admit(b, spend, 0.0) == "max_evaluations"  # 1 stored + 2 in flight
    assert budgets.reached(b, spend) == "max_evaluations"
    spend.end(2)
    spend.end(1)
    spend.add_row(6.0)
    assert budgets.reached(b, spend) == "max_train_cpu_s" and spend.committed_rows == 2


def test_cpu_estimate_is_the_mean_per_cost_class():
    est = budgets.CpuEstimates()
    assert est.of(("train",)) is None
    est.add(("train",), 2.0)
    est.add(("train",), 4.0)
    est.add(("smoke",), 0.5)
    assert est.of(("train",)) == 3.0 and est.of(("smoke",)) == 0.5
    assert est.of(("train", 1, 2, False)) is None  # no rollout has finished: unknown
    est.add(("train", 1, 2, False), 1.0)
    est.add(("train", None, 2, False), 1.5)
    assert est.of(("train", 3, 4, True)) == 1.5  # a new rollout shape: the dearest rollout so far


def test_eta_is_the_first_budget_to_run_out_at_the_run_rate():
    b = BudgetConfig(max_candidates=100, max_seconds=1000.0)
    # 10 candidates in 50 s: 90 more take 450 s, before the 950 s left
    assert budgets.eta_s(b, elapsed_s=50.0, used={"max_candidates": 10}) == pytest.approx(450.0)
    # a resumed run: the elapsed time and the use are both the whole run's, so the rate is unchanged
    assert budgets.eta_s(b, elapsed_s=100.0, used={"max_candidates": 20}) == pytest.approx(400.0)
    assert budgets.eta_s(b, elapsed_s=990.0, used={"max_candidates": 99}) == pytest.approx(10.0)
    assert budgets.eta_s(BudgetConfig(), elapsed_s=5.0, used={}) is None
    assert budgets.eta_s(BudgetConfig(max_evaluations=4), elapsed_s=5.0, used={"max_evaluations": 0}) is None


def test_the_time_still_cuts_after_another_budget_stopped_the_search(ray_local, tmp_path):
    # max_evaluations 2 is reached as the first two (slow) smoke evaluations start; the run's clock then
    # jumps past max_seconds (at the second progress report that shows them running), and those two are cut
    from fake_eval import fake_evaluate

    from optforge.engine import Engine
    from optforge.evaluators import EvalRequest

    now, seen = [0.0], []

    def progress(p):  # called at most every 0.5 s, after the loop has checked the budgets again
        seen.append(p.in_flight == 2)
        if seen.count(True) == 2:
            now[0] = 1000.0

    cfg = config_from_dict({"strategy": {"name": "list"}, "slots": 2, "deterministic": True,
                            "stages": ["smoke", "train"], "eval_timeout_s": 3600,
                            "budget": {"max_seconds": 100.0, "max_evaluations": 2}})
    # 8 sources: the strategy is not done when the budgets stop it (a done strategy's queue waits for a slot)
    strategy, store = ListStrategy([fake_source(0.1 * i, "# SLOW 60") for i in range(8)]), Store(tmp_path / "run")
    summary = Engine(cfg, strategy, store, fake_evaluate, make_request=EvalRequest, suite_version=lambda s: "fake-1",
                     progress=progress, clock=lambda: now[0]).run()
    assert summary.stop_reason == "max_evaluations" and summary.cut == 2 and store.evaluations() == []
    assert [e["reason"] for e in store.events("search_stopped")] == ["max_evaluations", "max_seconds"]
