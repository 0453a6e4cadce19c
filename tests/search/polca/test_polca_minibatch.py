"""Minibatches of (task, seed) pairs: each pair once per epoch, never twice in a draw, exact resume."""

from __future__ import annotations

import json

import pytest

from optforge.search.polca.minibatch import PairSampler

TASKS = ["mlp_a", "cnn_b", "rnn_c"]
SEEDS = [11, 12, 13, 14]


def test_every_pair_once_per_epoch_in_a_fresh_order():
    s = PairSampler(TASKS, SEEDS, seed=0)
    first = [p for _ in range(6) for p in s.draw(2)]
    second = [p for _ in range(6) for p in s.draw(2)]
    everything = sorted((t, x) for t in TASKS for x in SEEDS)
    assert sorted(first) == everything and sorted(second) == everything
    assert first != second and s.epoch == 1


def test_a_draw_never_holds_a_pair_twice_and_skips_the_epoch_tail():
    s = PairSampler(TASKS, SEEDS, seed=3)
    for _ in range(40):
        pairs = s.draw(5)  # 12 pairs: 5 + 5, then the next epoch (2 skipped)
        assert len(set(pairs)) == 5
    assert (s.epoch, s.position) == (19, 10)
    assert s.draw(12) == s.order(s.epoch)
    batches = s.minibatches(batch_size=2, num_batches=3)
    assert [len(b) for b in batches] == [2, 2, 2] and len({p for b in batches for p in b}) == 6


def test_the_order_depends_only_on_the_seed_and_epoch():
    a, b, c = PairSampler(TASKS, SEEDS, 1), PairSampler(list(reversed(TASKS)), SEEDS[::-1], 1), PairSampler(TASKS, SEEDS, 2)
    assert a.draw(12) == b.draw(12)
    assert a.order(0) != c.order(0)
    assert a.order(0) != a.order(1)


def test_resume_draws_exactly_what_the_interrupted_run_would_have():
    s = PairSampler(TASKS, SEEDS, seed=5)
    for _ in range(7):
        s.draw(3)
    saved = json.loads(json.dumps(s.state()))
    ahead = [s.draw(3) for _ in range(5)]
    back = PairSampler(TASKS, SEEDS, seed=5)
    back.load_state(saved)
    assert [back.draw(3) for _ in range(5)] == ahead
    with pytest.raises(ValueError, match="search seeds or the run seed changed"):
        PairSampler(TASKS, SEEDS[:3], seed=5).load_state(saved)


def test_impossible_draws_are_refused():
    with pytest.raises(ValueError, match=r"cannot draw 13 distinct .* = 12; lower strategy\.batch_size"):
        PairSampler(TASKS, SEEDS, 0).draw(13)
    with pytest.raises(ValueError, match="at least one search task"):
        PairSampler([], SEEDS, 0)
