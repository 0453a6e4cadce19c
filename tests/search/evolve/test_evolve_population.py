import numpy as np
import pytest

from optforge.search.evolve.dedup import normalise, normalised_hash
from optforge.search.evolve.population import Population, Program

RULE = '''"""doc"""
import torch
LR = 1e-3
BETA = 0.9  # momentum


def init(p, ctx):
    return {"m": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m = state["m"]
    m.mul_(BETA).add_(g)
    return -ctx.lr * m
'''


def test_normalised_hash_ignores_comments_whitespace_docstrings_and_names():
    renamed = RULE.replace("BETA", "MOMENTUM").replace("m = state", "buf = state").replace(
        "    m.mul_", "    buf.mul_").replace("* m\n", "* buf\n").replace('"""doc"""', "# no doc")
    renamed = renamed.replace("m.mul_(MOMENTUM).add_(g)", "m.mul_(MOMENTUM).add_( g )")
    assert normalised_hash(renamed) == normalised_hash(RULE)
    assert normalised_hash(RULE.replace("0.9", "0.95")) != normalised_hash(RULE)
    assert normalised_hash(RULE.replace("-ctx.lr * m", "-ctx.lr * g")) != normalised_hash(RULE)
    assert "def update(p, g, state, ctx)" in normalise(RULE)


def _pop(fits, children=None):
    pop = Population(1)
    for i, f in enumerate(fits):
        src = RULE.replace("0.9", f"0.{i + 1}") + f"\n\ndef helper{i}(x):\n    return x * {i}\n"
        pop.add(Program(id=f"p{i}", source=src, status="ok", fitness=f, children=(children or [0] * len(fits))[i]))
    return pop


def _freq(pop, **kw):
    rng = np.random.default_rng(0)
    picks = [pop.sample_parent(0, rng, **kw).id for _ in range(2000)]
    return {pid: picks.count(pid) / len(picks) for pid in pop.islands[0]}


def test_parent_sampling_prefers_fitness_and_penalises_offspring():
    pop = _pop([0.5, 0.0, -1.0])
    f = _freq(pop, sharpness=5.0, novelty_weight=0.0)
    assert f["p0"] > f["p1"] > f["p2"]
    crowded = _pop([0.5, 0.0, -1.0], children=[9, 0, 0])
    g = _freq(crowded, sharpness=5.0, novelty_weight=0.0)
    assert g["p0"] < f["p0"] and g["p1"] > f["p1"]


def test_failures_and_pending_are_never_parents_and_fix_mode_is_the_callers():
    pop = _pop([0.1])
    pop.add(Program(id="bad", source=RULE, status="diverged", fitness=-3.0))
    pop.add(Program(id="wait", source=RULE))
    rng = np.random.default_rng(0)
    assert {pop.sample_parent(0, rng, 10.0, 0.5).id for _ in range(50)} == {"p0"}
    assert Population(1).sample_parent(0, rng, 10.0, 0.5) is None


def test_migration_copies_the_best_to_the_next_island_in_a_ring():
    pop = Population(3)
    for i, (isl, f) in enumerate([(0, 1.0), (0, 0.5), (1, 0.2), (2, -0.3)]):
        pop.add(Program(id=f"p{i}", source=RULE, island=isl, status="ok", fitness=f))
    moves = pop.migrate(1)
    assert moves == [("p0", 0, 1), ("p2", 1, 2), ("p3", 2, 0)]
    assert pop.islands == [["p0", "p1", "p3"], ["p2", "p0"], ["p3", "p2"]]
    assert Population.from_state(pop.state()).islands == pop.islands


def test_inspirations_are_top_then_diverse_without_the_parent():
    pop = _pop([0.9, 0.8, 0.7, 0.1, 0.0])
    rng = np.random.default_rng(1)
    parent = pop.programs["p0"]
    insp = pop.inspirations(0, parent, rng, top=2, diverse=1)
    assert [p.id for p in insp[:2]] == ["p1", "p2"] and insp[2].id in ("p3", "p4")


@pytest.mark.parametrize("scores,expect", [({"a": 0.5, "b": -1.0, "c": 0.2}, ["b"]),
                                            ({"a": 0.5, "b": 0.1}, ["b", "a"])])
def test_lagging_tasks(scores, expect):
    assert Population(1).lagging_tasks(Program(id="x", source="", scores=scores)) == expect
