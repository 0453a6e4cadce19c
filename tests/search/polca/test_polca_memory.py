"""POLCA's memory: priorities by hand, true top-k under a size cap, exact state round trip."""

from __future__ import annotations

import heapq
import json
import math
import random

import pytest

from optforge.search.polca.memory import Candidate, Memory, Rollout, mean_priority, ucb_priority
from optforge.types import CEILING, FLOOR


def toy(memory: Memory) -> dict[str, Candidate]:
    """A: scores 1, -1, 0.5 (mean 1/6, n 3); B: 2.0 (n 1); C: no runs; D: unknown and 0.3 (mean 0.3, n 1)."""
    out = {}
    for name, scores in (("A", [1.0, -1.0, 0.5]), ("B", [2.0]), ("C", []), ("D", [None, 0.3])):
        c = memory.new(name, f"# rule {name}\n")
        c.add_rollouts(Rollout("mlp_a", seed, s, f"run {seed}") for seed, s in enumerate(scores))
        out[name] = c
    return out


def test_mean_priority_by_hand():
    c = toy(Memory())
    assert mean_priority(c["A"]) == pytest.approx(1 / 6, abs=1e-15)
    assert mean_priority(c["B"]) == 2.0
    assert mean_priority(c["C"]) == CEILING  # nothing known yet: explored first, like the reference's base agent
    assert mean_priority(c["D"]) == 0.3  # the unknown score is skipped, not read as 0
    assert (c["A"].n, c["D"].n, c["C"].mean) == (3, 1, None)


def test_ucb_priority_by_hand():
    c = toy(Memory())
    # iteration 3: ln(3 + 2) = 1.6094; range CEILING - FLOOR = 5; constant 0.1
    assert ucb_priority(c["A"], 3, 0.1) == pytest.approx(0.5328904043410221, abs=1e-12)  # 1/6 + 0.1*sqrt(1.6094/3)*5
    assert ucb_priority(c["D"], 3, 0.1) == pytest.approx(0.9343181205897597, abs=1e-12)  # 0.3 + 0.1*sqrt(1.6094)*5
    assert ucb_priority(c["B"], 3, 0.1) == CEILING  # 2 + bonus, clipped to the score range
    assert ucb_priority(c["C"], 3, 0.1) == CEILING  # n = 0
    assert ucb_priority(c["A"], 3, 1.0) == CEILING
    assert ucb_priority(c["A"], 3, 0.0) == pytest.approx(1 / 6, abs=1e-15)
    # the bonus grows with the iteration: a rarely-run candidate overtakes a well-run one
    m = Memory("ucb", ucb_constant=0.1)
    a, d = m.new("a", ""), m.new("d", "")
    a.add_rollouts(Rollout("t", s, 0.6) for s in range(8))
    d.add_rollouts([Rollout("t", 0, 0.3)])
    assert m.priority(a, 0) > m.priority(d, 0)
    assert m.priority(a, 50) < m.priority(d, 50)


def test_pop_order_ties_go_to_the_newer_candidate():
    m = Memory()
    c = toy(m)
    for x in c.values():
        m.push(x)
    # B (2.0) and C (no runs: CEILING = 2.0) tie; C is newer
    assert [x.id for x in m.pop_top(2, iteration=0)] == ["C", "B"]
    assert [x.id for x in m.pop_top(5, iteration=0)] == ["D", "A"]
    assert len(m) == 0 and m.pop_top(1, 0) == []


def test_ucb_pop_order():
    m = Memory("ucb", ucb_constant=0.1)
    c = toy(m)
    for x in c.values():
        m.push(x)
    assert [x.id for x in m.ranked(3)] == ["C", "B", "D", "A"]


def test_exploit_pick_needs_min_rollouts():
    m = Memory(min_rollouts=2)
    c = toy(m)
    for x in c.values():
        m.push(x)
    assert m.best().id == "A"  # B's 2.0 rests on one run
    assert Memory(min_rollouts=1).best(c.values()).id == "B"
    assert Memory(min_rollouts=4).best(c.values()) is None
    # candidates being explored (popped) count when passed in; ties go to the newer
    m2 = Memory(min_rollouts=1)
    old, new = m2.new("old", ""), m2.new("new", "")
    for x in (old, new):
        x.add_rollouts([Rollout("t", 0, 0.5)])
    m2.push(old)
    assert m2.best([new]).id == "new"


def test_bounded_memory_keeps_the_true_top_k():
    rng = random.Random(7)
    means = [round(rng.uniform(-3, 2), 6) for _ in range(60)]
    m = Memory(max_size=10)
    evicted = []
    for i, mean in enumerate(means):
        c = m.new(f"c{i}", "")
        c.add_rollouts([Rollout("t", 0, mean)])
        evicted += m.push(c)
    top = sorted(range(60), key=lambda i: means[i], reverse=True)[:10]
    assert {c.id for c in m.candidates()} == {f"c{i}" for i in top}
    assert len(evicted) == 50 and {c.id for c in evicted}.isdisjoint(f"c{i}" for i in top)
    # the reference's cap (heap list sliced after each push) keeps other candidates on this sequence
    heap: list[tuple[float, int]] = []
    for i, mean in enumerate(means):
        heapq.heappush(heap, (-mean, i))
        heap = heap[:10]
    assert {i for _, i in heap} != set(top)


def test_a_pushed_candidate_can_be_the_one_evicted_and_the_older_of_a_tie_leaves():
    m = Memory(max_size=2)
    a, b = m.new("a", ""), m.new("b", "")
    a.add_rollouts([Rollout("t", 0, 1.0)])
    b.add_rollouts([Rollout("t", 0, 0.5)])
    m.push(a)
    m.push(b)
    low = m.new("low", "")
    low.add_rollouts([Rollout("t", 0, -1.0)])
    assert [c.id for c in m.push(low)] == ["low"]
    tie = m.new("tie", "")
    tie.add_rollouts([Rollout("t", 0, 0.5)])
    assert [c.id for c in m.push(tie)] == ["b"]


def test_misuse_is_refused():
    m = Memory()
    c = m.new("a", "")
    m.push(c)
    with pytest.raises(ValueError, match="already queued"):
        m.push(c)
    with pytest.raises(ValueError, match="not made by this memory"):
        m.push(Candidate("x", "", created=5))
    with pytest.raises(ValueError, match="priority"):
        Memory("median")
    for bad in (2.5, -3.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="outside the score range"):
            Rollout("t", 0, bad)
    assert Rollout("t", 0, FLOOR).score == FLOOR


def test_a_repeated_task_seed_pair_is_not_counted_twice():
    c = Memory().new("a", "")
    assert len(c.add_rollouts([Rollout("t", 1, 0.5), Rollout("t", 2, 0.0)])) == 2
    assert [r.seed for r in c.add_rollouts([Rollout("t", 1, 0.5), Rollout("u", 1, 1.0)])] == [1]
    assert c.n == 3 and c.mean == pytest.approx(0.5)


def test_state_round_trip_is_exact():
    m = Memory("ucb", ucb_constant=0.3, max_size=6, min_rollouts=2)
    rng = random.Random(3)
    for i in range(9):
        c = m.new(f"c{i}", f"LR = {rng.random()!r}\n# é ü\n", parent=f"c{i - 1}" if i else None)
        c.add_rollouts(Rollout(f"task{j % 3}", j, rng.choice([None, rng.uniform(-3, 2), 1 / 3, 0.1]), f"fb {j} ✓")
                       for j in range(rng.randrange(0, 5)))
        c.embedding = [rng.gauss(0, 1) for _ in range(4)] if i % 2 else None
        m.push(c, iteration=i)
    explored = m.pop_top(2, iteration=9)
    for c in explored:
        c.add_rollouts([Rollout("task9", 99, 0.25, "again")])
        m.push(c, iteration=9)
    text = json.dumps(m.state())
    back = Memory("ucb", ucb_constant=0.3, max_size=6, min_rollouts=2)
    back.load_state(json.loads(text))
    assert json.dumps(back.state()) == text
    assert [c.to_json() for c in back.ranked(10)] == [c.to_json() for c in m.ranked(10)]
    assert back.best().id == m.best().id
    assert back.new("next", "").created == m.new("next", "").created
    with pytest.raises(ValueError, match="version"):
        Memory().load_state({**m.state(), "version": 99})
