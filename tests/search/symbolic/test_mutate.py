"""Every mutation of every warm start either passes abstract execution and then runs through
RuleOptimizer with no shape error, or is rejected before running."""

import itertools

import numpy as np
import pytest
import torch

from optforge.rule import RuleOptimizer, load_rule
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic import mutate as M
from optforge.search.symbolic.abstract import AbstractError, execute
from optforge.search.symbolic.hashing import live_program, symbolic_hash
from optforge.search.symbolic.interpret import fingerprint
from optforge.search.symbolic.program import render

SHAPES = [((6, 4), "hidden_matrix"), ((4, 6), "head"), ((5,), "vector"), ((3, 2, 2), "conv"), ((), "scalar")]


def _run_through_optimizer(prog, dtype=torch.float32, steps=3):
    """Load the rendered source (trusted here: it is our own program) and take a few steps on every role."""
    rule = load_rule(render(live_program(prog)), name="mutant")
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, dtype=dtype, generator=gen).requires_grad_(True) for shape, _ in SHAPES]
    groups = [{"params": [p], "role": role} for p, (_, role) in zip(params, SHAPES)]
    opt = RuleOptimizer(groups, rule, total_steps=10)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, dtype=dtype, generator=gen)
        opt.step()  # raises RuleError on a wrong delta shape/dtype, or the program's own error


@pytest.mark.parametrize("name", warmstarts.names())
def test_every_raw_mutation_is_rejected_or_runs(name):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    cfg = M.MutationConfig()
    prog = warmstarts.program(name)
    accepted = rejected = 0
    for i in range(21):
        kind = M.MUTATIONS[i % 3]
        made = M._OPS[kind](prog, rng, cfg)
        if made is None:
            continue
        child, _ = made
        try:
            execute(child)
        except AbstractError:
            rejected += 1
            continue
        accepted += 1
        _run_through_optimizer(child)
        if accepted % 4 == 0:
            prog = child  # walk away from the warm start too
    assert accepted >= 4
    assert rejected >= 1


def test_mutate_returns_valid_functionally_new_children_over_many_seeds():
    cfg = M.MutationConfig()
    n = 0
    for seed, name in itertools.product(range(3), warmstarts.names()):
        rng = np.random.default_rng(seed)
        parent = warmstarts.program(name)
        child = M.mutate(parent, rng, cfg)
        assert child is not None
        execute(child.program)
        assert child.hash == symbolic_hash(child.program) != symbolic_hash(parent)
        assert child.fingerprint == fingerprint(live_program(child.program)) != fingerprint(parent)
        if seed % 2 == 0:
            _run_through_optimizer(child.program, dtype=torch.float64)
        n += 1
    assert n == 3 * len(warmstarts.names())


def test_hparam_only_changes_constants_only():
    rng = np.random.default_rng(0)
    parent = warmstarts.program("adamw")
    for _ in range(20):
        child = M.mutate(parent, rng, M.MutationConfig(hparam_only=True))
        assert child is not None and child.mutation == "constant"
        assert len(child.program.body) == len(parent.body)
        diffs = [
            (a, b) for s, t in zip(parent.body, child.program.body) for a, b in zip(s.args, t.args) if a != b
        ]
        assert len(diffs) == 1
        a, b = diffs[0]
        assert isinstance(a, float) and isinstance(b, float)
        assert [(s.target, s.fn) for s in parent.body] == [(s.target, s.fn) for s in child.program.body]


def test_constant_mutation_is_a_power_of_two_factor_and_clipped():
    rng = np.random.default_rng(1)
    vals = [M.mutate_constant(0.5, rng) for _ in range(2000)]
    logs = np.log2(np.array(vals) / 0.5)
    assert abs(logs.mean()) < 0.1 and abs(logs.std() - 1.0) < 0.1
    assert M.mutate_constant(1e10, np.random.default_rng(5)) <= 1e10


def test_mutation_config_checks():
    with pytest.raises(ValueError, match="max_len"):
        M.MutationConfig(max_len=0)
    with pytest.raises(ValueError, match="const_prob"):
        M.MutationConfig(const_prob=2.0)
