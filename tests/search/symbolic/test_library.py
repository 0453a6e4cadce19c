"""Every library function returns what abstract execution says, for every kind combination."""

import itertools

import pytest
import torch

from optforge.search.symbolic.abstract import AbstractError, call_kind
from optforge.search.symbolic.interpret import namespace
from optforge.search.symbolic.library import FUNCTIONS, P, S

SHAPES = [(6, 4), (4, 6), (5,), (3, 2, 2), ()]


def _value(kind, shape, dtype, gen):
    if kind == P:
        return torch.randn(shape, dtype=dtype, generator=gen)
    return torch.tensor(0.7, dtype=torch.float64)


def test_library_size():
    assert len(FUNCTIONS) >= 45
    for name in ("sign", "sqrt", "interp", "clip", "norm", "cosine_sim", "newton_schulz", "row_normalize",
                 "col_normalize", "gram_mul", "select_matrix", "clip_by_global_norm"):
        assert name in FUNCTIONS


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_kinds_shapes_and_dtypes(name):
    fn = namespace()[name]
    f = FUNCTIONS[name]
    gen = torch.Generator().manual_seed(0)
    combos = list(itertools.product([S, P], repeat=f.arity))
    if f.rule == "select":
        combos = [("R", P, P), ("R", S, S)]
    checked = 0
    for kinds in combos:
        try:
            out_kind = call_kind(name, list(kinds))
        except AbstractError:
            continue
        for shape, dtype in itertools.product(SHAPES, (torch.float32, torch.float64)):
            args = ["hidden_matrix" if k == "R" else _value(k, shape, dtype, gen) for k in kinds]
            out = fn(*args)
            assert isinstance(out, torch.Tensor)
            if out_kind == P:
                assert out.shape == torch.Size(shape) and out.dtype == dtype, (name, kinds, shape)
            else:
                assert out.ndim == 0
        checked += 1
    assert checked >= 1


def test_python_float_constants_are_accepted():
    ns = namespace()
    assert float(ns["interp"](0.0, 1.0, 0.25)) == 0.25
    assert float(ns["power"](-2.0, 2.0)) == 4.0  # protected: |x|^y
    assert float(ns["sqrt"](-4.0)) == 2.0
    assert float(ns["log1p"](-2.0)) == 0.0  # log|1 + x|


def test_number_literals_are_cast_like_the_tensor_they_meet_and_reused():
    """`_w` casts a literal to the narrowest tensor dtype among the arguments; the 0-d tensor of a
    literal is made once (a hot path), but -0.0 and nan are never confused with cached values."""
    ns = namespace()
    x32, x16 = torch.ones(3), torch.ones(3, dtype=torch.bfloat16)
    a, c = ns["_w"](x32, 0.1)
    assert a is x32 and c.dtype == torch.float32 and float(c) == float(torch.tensor(0.1, dtype=torch.float32))
    assert ns["_w"](x32, 0.1)[1] is c
    assert ns["_w"](x16, torch.tensor(0.1, dtype=torch.float64))[1].dtype == torch.bfloat16
    assert ns["_w"](0.5, 2.0)[0].dtype == torch.float64
    assert torch.signbit(ns["_w"](x32, -0.0)[1]) and not torch.signbit(ns["_w"](x32, 0.0)[1])
    assert torch.isnan(ns["_w"](x32, float("nan"))[1])
    assert torch.equal(ns["mul"](torch.full((2,), 3.0), 0.1), torch.full((2,), 3.0) * torch.tensor(0.1, dtype=torch.float32))


def test_newton_schulz_orthogonalises_both_orientations():
    ns = namespace()
    x = torch.randn(8, 3, dtype=torch.float64)
    for m in (x, x.T):
        o = ns["newton_schulz"](m)
        s = torch.linalg.svdvals(o)
        assert o.shape == m.shape
        assert s.min() > 0.5 and s.max() < 1.5


def test_select_matrix_follows_the_role():
    ns = namespace()
    a, b = torch.ones(2), torch.zeros(2)
    assert ns["select_matrix"]("hidden_matrix", a, b) is a
    assert ns["select_matrix"]("conv", a, b) is a
    for role in ("embedding", "head", "vector", "scalar"):
        assert ns["select_matrix"](role, a, b) is b
