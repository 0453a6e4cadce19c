"""The epsilon-net on fixed vectors: farthest-first order, rejections with their distance, epsilon 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optforge.search.polca.epsilon_net import Decision, distance, epsilon_net, unit_normalise


def test_farthest_first_order_and_rejections():
    seen = [("M", [0.0, 0.0])]
    proposals = [("a", [1.0, 0.0]), ("b", [0.95, 0.0]), ("c", [3.0, 0.0]), ("d", [0.05, 0.0])]
    net = epsilon_net(proposals, seen, epsilon=0.5)
    # round 1: distances to M are a 1, b 0.95, c 3, d 0.05 -> d rejected; c (farthest) accepted
    # round 2: a min(1, 2) = 1, b min(0.95, 2.05) = 0.95 -> a accepted
    # round 3: b is 0.05 from a -> rejected
    assert [(x.key, x.nearest) for x in net.accepted] == [("c", "M"), ("a", "M")]
    assert [x.distance for x in net.accepted] == pytest.approx([3.0, 1.0])
    assert [(x.key, x.nearest) for x in net.rejected] == [("d", "M"), ("b", "a")]
    assert [x.distance for x in net.rejected] == pytest.approx([0.05, 0.05])


def test_distance_equal_to_epsilon_is_rejected_and_ties_go_to_the_earlier_proposal():
    net = epsilon_net([("x", [1.0]), ("y", [-1.0]), ("z", [0.5])], [("M", [0.0])], epsilon=0.5)
    assert [d.key for d in net.accepted] == ["x", "y"]  # x and y tie at 1.0: x came first
    assert net.rejected == [Decision("z", 0.5, "M")]


def test_empty_memory_accepts_the_first_at_infinite_distance():
    net = epsilon_net([("p", [0.0, 1.0]), ("q", [0.0, 1.0 + 1e-9]), ("r", [5.0, 0.0])], [], epsilon=1e-3)
    assert net.accepted[0] == Decision("p", math.inf, None)
    assert [d.key for d in net.accepted] == ["p", "r"]
    assert [(d.key, d.nearest) for d in net.rejected] == [("q", "p")]


def test_epsilon_zero_filters_nothing():
    proposals = [("a", [0.0]), ("b", [0.0]), ("c", [2.0])]
    net = epsilon_net(proposals, [("M", [0.0])], epsilon=0)
    assert [d.key for d in net.accepted] == ["a", "b", "c"] and net.rejected == []
    assert [d.distance for d in net.accepted] == [0.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_net(proposals, [], epsilon=-0.1)


def test_text_embeddings_are_unit_normalised_so_the_raw_scale_does_not_matter():
    v = unit_normalise([3.0, 4.0])
    assert v.tolist() == pytest.approx([0.6, 0.8])
    assert distance(unit_normalise([3.0, 4.0]), unit_normalise([300.0, 400.0])) == 0.0
    assert distance(unit_normalise([1.0, 0.0]), unit_normalise([0.0, 7.0])) == pytest.approx(math.sqrt(2))
    assert distance(unit_normalise([1.0, 0.0]), unit_normalise([-2.0, 0.0])) == pytest.approx(2.0)
    for bad in ([0.0, 0.0], [1.0, np.nan]):
        with pytest.raises(ValueError, match="finite and non-zero"):
            unit_normalise(bad)


def test_different_layouts_cannot_be_compared():
    with pytest.raises(ValueError, match="different layouts"):
        epsilon_net([("a", [0.0, 1.0])], [("M", [0.0])], epsilon=0.1)


def test_nearest_points_match_brute_force():
    rng = np.random.default_rng(0)
    seen = [(f"s{i}", rng.normal(size=8)) for i in range(200)]
    proposals = [(f"p{i}", rng.normal(size=8)) for i in range(6)]
    net = epsilon_net(proposals, seen, epsilon=0)
    for (_, v), d in zip(proposals, net.accepted):
        brute, key = min((distance(v, s), k) for k, s in seen)
        assert d.nearest == key and d.distance == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_the_net_invariants_on_random_points(seed):
    rng = np.random.default_rng(seed)
    seen = [(f"s{i}", rng.uniform(size=2)) for i in range(5)]
    proposals = [(f"p{i}", rng.uniform(size=2)) for i in range(30)]
    points = dict(seen + proposals)
    net = epsilon_net(proposals, seen, epsilon=0.15)
    assert net.accepted and net.rejected
    assert sorted(d.key for d in net.accepted + net.rejected) == sorted(k for k, _ in proposals)
    kept = [k for k, _ in seen]
    for d in net.accepted:  # farther than epsilon from everything kept before it, farthest first
        assert min(distance(points[d.key], points[k]) for k in kept) == pytest.approx(d.distance)
        assert d.distance > 0.15
        kept.append(d.key)
    assert [d.distance for d in net.accepted] == sorted((d.distance for d in net.accepted), reverse=True)
    for d in net.rejected:  # within epsilon of a kept point
        assert d.nearest in kept and d.distance <= 0.15
        assert distance(points[d.key], points[d.nearest]) == pytest.approx(d.distance)
