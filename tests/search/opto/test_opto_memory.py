"""OptoPrime's FIFO memory: the last N pairs in order, rendered oldest first, exact JSON state."""

from __future__ import annotations

import json

import pytest

from optforge.search.opto.memory import Memory


def filled(n=7, size=5):
    m = Memory(size)
    for i in range(n):
        m.add({"rule": f"LR = {i}\n", "BETA2": 0.9 + i / 100}, f"feedback {i}")
    return m


def test_keeps_the_last_n_in_order():
    m = filled()
    assert len(m) == 5 and [e.feedback for e in m] == [f"feedback {i}" for i in range(2, 7)]
    assert Memory(0).size == 0 and len(filled(size=0)) == 0


def test_renders_as_json_examples_oldest_first():
    text = filled(n=2).render(10_000)
    assert text == (
        "Below are some variables and their feedbacks you received in the past (oldest first).\n\n"
        + json.dumps({"variables": {"rule": "LR = 0\n", "BETA2": 0.9}, "feedback": "feedback 0"}, indent=4) + "\n"
        + json.dumps({"variables": {"rule": "LR = 1\n", "BETA2": 0.91}, "feedback": "feedback 1"}, indent=4))
    assert Memory(3).render(10_000) == ""


def test_over_budget_the_oldest_go_first_and_the_cut_is_marked():
    m = filled()
    one = len(json.dumps({"variables": {"rule": "LR = 6\n", "BETA2": 0.96}, "feedback": "feedback 6"}, indent=4))
    text = m.render(250 + 2 * one)
    assert len(text) <= 250 + 2 * one
    assert "(3 older entries left out for the character budget)" in text
    assert '"feedback 4"' not in text and '"feedback 5"' in text and '"feedback 6"' in text
    short = m.render(100)
    assert len(short) <= 100 and short.endswith("characters cut: this section's budget is 100 characters]")


def test_state_round_trips_exactly():
    m = filled()
    back = Memory.from_state(json.loads(json.dumps(m.to_state())))
    assert back.size == 5 and back.to_state() == m.to_state() and back.render(3000) == m.render(3000)


def test_a_state_stored_with_sorted_keys_renders_the_same_prompt():
    """The run store writes JSON with sorted keys: the variables keep their order all the same, or a
    resumed run would ask the model another prompt than the uninterrupted run."""
    m = filled()
    back = Memory.from_state(json.loads(json.dumps(m.to_state(), sort_keys=True)))
    assert back.render(10_000) == m.render(10_000) and '"rule"' in m.render(10_000)
    assert [list(e.variables) for e in back] == [["rule", "BETA2"]] * 5


def test_a_state_saved_with_mapping_variables_still_loads():
    old = {"size": 2, "entries": [{"variables": {"rule": "LR = 1\n", "BETA2": 0.9}, "feedback": "f"}]}
    assert [dict(e.variables) for e in Memory.from_state(old)] == [{"rule": "LR = 1\n", "BETA2": 0.9}]


@pytest.mark.parametrize("size", [-1, 2.0, True])
def test_bad_sizes(size):
    with pytest.raises(ValueError, match="memory size must be an int >= 0"):
        Memory(size)
