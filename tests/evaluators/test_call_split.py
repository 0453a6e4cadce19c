"""How many sandbox calls an evaluation's runs go to (`validate.calls_for`): one per worker, and more
where one call would hold a large share of the sandbox timeout at AdamW's measured speed."""

from __future__ import annotations

from optforge.evaluators.payload import baseline_payload
from optforge.evaluators.run_records import RunSpec
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.validate import CALL_SHARE, _split, calls_for


def test_one_call_per_worker_while_the_runs_fit():
    assert calls_for([1.0] * 10, 2, None) == 2
    assert calls_for([1.0] * 10, 2, 20.0) == 2
    assert calls_for([1.0], 2, 20.0) == 1  # never more calls than runs


def test_more_calls_where_one_would_near_the_timeout():
    assert calls_for([10.0] * 10, 2, 20.0) == 5
    assert calls_for([100.0, 1.0], 1, 20.0) == 2  # a run longer than the bound gets a call of its own, no more


def test_heldouts_fresh_runs_stay_well_under_the_sandbox_timeout():
    """Before, a `heldout` evaluation sent its fresh runs (14 tasks x 3 report seeds, about 100 s at
    AdamW's measured speed) in one call per worker, against the default 120 s a call: on a slower
    machine, or with a rule a few times slower a step, every such call timed out. Now each call's
    expected time is at most CALL_SHARE of the timeout, unless one run alone is longer."""
    suite = get_suite("heldout")
    cost = {k: float(v["cost_per_step"]) for k, v in baseline_payload("heldout")["tasks"].items()}
    specs = [RunSpec(t.name, 0, 1e-3, seed, t.steps, t.steps, (t.steps,), 0.0) for t in suite.tasks for seed in suite.report_seeds]
    weight = lambda s: s.steps * cost[s.task]  # noqa: E731
    timeout = 120.0
    total = sum(map(weight, specs))
    assert total > timeout * 0.5  # the case this guards: one call would hold most of the timeout
    groups = _split(specs, calls_for([weight(s) for s in specs], 1, timeout * CALL_SHARE), weight)
    assert sorted(i for g in groups for i in g) == list(range(len(specs)))
    for g in groups:
        seconds = sum(weight(specs[i]) for i in g)
        assert seconds <= timeout * CALL_SHARE * 1.5 or len(g) == 1, (seconds, [specs[i].task for i in g])
