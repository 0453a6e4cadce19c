"""The rendered warm starts compute the same numbers as the hand-written seeds (float64, 1e-12)."""

import pytest
import torch

from optforge import seeds
from optforge.rule import RuleOptimizer, load_rule
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.interpret import as_rule
from optforge.search.symbolic.program import render

CASES = [((6, 4), "hidden_matrix"), ((4, 6), "hidden_matrix"), ((5,), "vector"), ((4, 6), "head")]


def _trajectory(rule, shape, role, steps=20):
    gen = torch.Generator().manual_seed(7)
    p = torch.randn(shape, dtype=torch.float64, generator=gen).requires_grad_(True)
    grads = [torch.randn(shape, dtype=torch.float64, generator=gen) for _ in range(steps)]
    opt = RuleOptimizer([{"params": [p], "role": role}], rule, total_steps=steps)
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out)


def test_at_least_the_required_seeds():
    assert {"adamw", "lion", "signum", "sgd", "nesterov", "adam", "adabelief", "muon"} <= set(warmstarts.names())
    assert set(warmstarts.names()) <= set(seeds.names())


@pytest.mark.parametrize("name", warmstarts.names())
@pytest.mark.parametrize("shape,role", CASES)
def test_warm_start_matches_seed(name, shape, role):
    prog = warmstarts.program(name)
    seed = seeds.load(name)
    assert prog.lr == seed.lr
    ref = _trajectory(seed, shape, role)
    rendered = _trajectory(load_rule(render(prog), name=f"sym-{name}"), shape, role)
    interpreted = _trajectory(as_rule(prog), shape, role)
    assert (ref - ref[0]).abs().max() > 1e-6  # the parameter actually moves
    torch.testing.assert_close(rendered, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(interpreted, ref, atol=1e-12, rtol=0)


def test_a_changed_constant_breaks_the_match():
    """The oracle test can fail: AdamW's program with beta1 0.2 instead of 0.1 is not AdamW."""
    prog = warmstarts.program("adamw")
    st = prog.body[0]
    assert st.fn == "interp" and st.args[2] == 0.1
    bad = prog.replace(body=(type(st)(st.target, st.fn, (st.args[0], st.args[1], 0.2)),) + prog.body[1:])
    ref = _trajectory(seeds.load("adamw"), (6, 4), "hidden_matrix")
    assert (_trajectory(as_rule(bad), (6, 4), "hidden_matrix") - ref).abs().max() > 1e-6
