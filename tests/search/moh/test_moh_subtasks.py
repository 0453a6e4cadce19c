"""Subtasks of the search suite, their weights and the meta-utility (MoH's weighted mean)."""

import pytest

from optforge.evaluators.tasks import get_suite
from optforge.search.moh.subtasks import WORST, Subtask, group_tasks, meta_utility, resolve_subtasks, task_cost


def _names(suite):
    return [t.name for t in suite.tasks]


def test_default_subtasks_are_the_search_suites_families_weighted_by_cost():
    suite = get_suite("train")
    subs = resolve_subtasks(_names(suite), lambda: suite.tasks, None, "family", "cost")
    families = list(dict.fromkeys(t.family for t in suite.tasks))
    assert [s.name for s in subs] == families
    assert sorted(t for s in subs for t in s.tasks) == sorted(t.name for t in suite.tasks)
    by_name = {t.name: t for t in suite.tasks}
    for s in subs:
        assert s.weight == sum(by_name[t].steps * by_name[t].batch_size for t in s.tasks)


def test_one_subtask_per_task_and_equal_weights():
    suite = get_suite("smoke")
    assert group_tasks(suite.tasks, "task") == {t.name: (t.name,) for t in suite.tasks}
    subs = resolve_subtasks(_names(suite), lambda: suite.tasks, None, "task", "equal")
    assert [s.weight for s in subs] == [1.0] * len(suite.tasks)


def test_explicit_weights_and_a_held_out_task_is_refused():
    smoke = get_suite("smoke")
    names = [t.name for t in smoke.tasks]
    unknown_tasks = lambda: []  # noqa: E731 - explicit subtasks and weights need no Task objects
    subs = resolve_subtasks(names, unknown_tasks, {"a": names[:1], "b": names[1:]}, "family", {"a": 1.0, "b": 3.0})
    assert [(s.name, s.weight) for s in subs] == [("a", 1.0), ("b", 3.0)]
    heldout = get_suite("heldout_tiny").tasks[0].name
    with pytest.raises(ValueError, match=f"{heldout}.*not in the search suite"):
        resolve_subtasks(names, lambda: smoke.tasks, {"a": [heldout]}, "family", "cost")
    with pytest.raises(ValueError, match="no weight for subtask 'b'"):
        resolve_subtasks(names, unknown_tasks, {"a": names[:1], "b": names[1:]}, "family", {"a": 1.0})
    with pytest.raises(ValueError, match="no family or size known"):
        resolve_subtasks(["a", "b"], unknown_tasks, None, "family", "cost")


def test_meta_utility_is_the_weighted_mean_and_a_missing_subtask_counts_worst():
    subs = (Subtask("small", ("a",), 1.0), Subtask("big", ("b",), 3.0))
    assert meta_utility({"small": 0.4, "big": -0.2}, subs) == pytest.approx((0.4 - 0.6) / 4)
    assert meta_utility({"small": 0.4}, subs) == pytest.approx((0.4 + 3 * WORST) / 4)
    assert meta_utility({"small": float("nan"), "big": None}, subs) == WORST


def test_task_cost_is_samples_trained_on():
    t = get_suite("smoke").tasks[0]
    assert task_cost(t) == t.steps * t.batch_size
