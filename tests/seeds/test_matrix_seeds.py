"""Oracle and invariance tests for the matrix seeds (Muon family, SWAN, Conda, SOAP).

Float64, a fixed gradient sequence, 6x4 and 4x6 tensors (both Newton-Schulz orientations), 30 steps,
run through RuleOptimizer. Oracles: torch.optim.Muon and pytorch_optimizer (Muon, NorMuon, Conda, SOAP)
with their bf16 Newton-Schulz patched to float64 (reference A.4 step 2), atol 1e-6 (the NS eps
convention differs: `+1e-7` here, `clamp(min=1e-7)` there). Seeds without an installable oracle
(AdaMuon, AuON, Hybrid-AuON, ROOT, SWAN, NorMuon's official form) are checked against references
written here from the papers' equations, plus one invariance per optimizer (A.4 step 3).
"""

import functools
import importlib
import math

import pytest
import torch

from optforge import seeds
from optforge.rule import RuleOptimizer
from torch_oracles import torch_ns_fp64

MATRIX_SEEDS = ["muon", "normuon", "adamuon", "auon", "hybrid_auon", "root", "swan", "conda", "soap"]
SHAPES = [(6, 4), (4, 6)]
STEPS = 30
ABC = (3.4445, -4.7750, 2.0315)


# ---------------------------------------------------------------------------------------------
# harness


def _grads(shape, steps=STEPS, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    # a drifting mean makes momentum matter; the noise keeps every step different
    drift = torch.randn(shape, generator=gen, dtype=dtype)
    return [drift + torch.randn(shape, generator=gen, dtype=dtype) for _ in range(steps)]


def _p0(shape, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(123), dtype=torch.float64).to(dtype)


def _drive(opt, p, grads):
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach().clone()


def _run_rule(name, shape, grads, role="hidden_matrix", lr=None, **hparams):
    rule = seeds.load(name)
    if hparams:
        rule = rule.with_hparams(**hparams)
    p = torch.nn.Parameter(_p0(shape, grads[0].dtype))
    opt = RuleOptimizer([{"params": [p], "role": role}], rule, lr=lr)
    return _drive(opt, p, grads)


def _deltas(name, shape, grads, role="hidden_matrix", **hparams):
    """Per-step deltas of a seed, and the rule (to reach its helpers)."""
    rule = seeds.load(name)
    if hparams:
        rule = rule.with_hparams(**hparams)
    p = torch.nn.Parameter(_p0(shape, grads[0].dtype))
    opt = RuleOptimizer([{"params": [p], "role": role}], rule)
    out = []
    for g in grads:
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        out.append(p.detach() - before)
    return out, rule


def _close(got, want, atol):
    err = (got - want).abs().max().item()
    assert err <= atol, f"max |diff| = {err:.3e} > {atol:.0e}"


# ---------------------------------------------------------------------------------------------
# test-only references, written from the papers' equations


def _ns_ref(u, steps=5, coeffs=ABC):
    """Newton-Schulz quintic on the wide orientation: X <- aX + b (X X^T) X + c (X X^T)^2 X."""
    a, b, c = coeffs
    wide = u.shape[0] <= u.shape[1]
    x = u if wide else u.transpose(0, 1)
    x = x / (torch.linalg.matrix_norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.transpose(0, 1)
        x = a * x + b * (gram @ x) + c * (gram @ (gram @ x))
    return x if wide else x.transpose(0, 1)


def _nesterov_lerp(g, buf, mu):
    buf.mul_(mu).add_((1 - mu) * g)  # B <- mu B + (1 - mu) g
    return (1 - mu) * g + mu * buf  # u = (1 - mu) g + mu B


def _normuon_ref(p, grads, lr=0.02, mu=0.95, beta2=0.95, eps=1e-10):
    p = p.clone()
    m, n = p.shape
    buf = torch.zeros_like(p)
    v = torch.zeros(m, 1, dtype=p.dtype)
    for g in grads:
        o = _ns_ref(_nesterov_lerp(g, buf, mu))
        v = beta2 * v + (1 - beta2) * (o * o).sum(dim=1, keepdim=True) / n
        on = o / (torch.sqrt(v) + eps)
        on = on * torch.linalg.matrix_norm(o) / (torch.linalg.matrix_norm(on) + eps)
        p = p - lr * math.sqrt(max(1.0, m / n)) * on
    return p


def _adamuon_ref(p, grads, lr=0.02, mu=0.95, beta2=0.999, eps=1e-8, wd=0.01):
    p = p.clone()
    m, n = p.shape
    buf = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        o = _ns_ref(_nesterov_lerp(g, buf, mu))
        v = beta2 * v + (1 - beta2) * o * o
        oh = o / (torch.sqrt(v / (1 - beta2**t)) + eps)
        oh = oh * math.sqrt(min(m, n)) / (torch.linalg.matrix_norm(oh) + eps)
        p = p * (1 - lr * wd) - lr * 0.2 * math.sqrt(max(m, n)) * oh
    return p


def _cosh_rms(x, gamma=1.5):
    return torch.sqrt(torch.mean(torch.cosh(gamma * x) ** 2))


def _auon_ref(p, grads, lr=0.08, mu=0.95, wd=0.01):
    p = p.clone()
    buf = torch.zeros_like(p)
    for g in grads:
        G = _nesterov_lerp(g, buf, mu)
        r = _cosh_rms(G / (torch.linalg.matrix_norm(G) + 1e-7))
        p = p * (1 - lr * wd) - lr * G / (r + 1e-8)
    return p


def _hybrid_auon_ref(p, grads, lr=0.08, mu=0.95, wd=0.01):
    p = p.clone()
    buf = torch.zeros_like(p)
    for g in grads:
        G = _nesterov_lerp(g, buf, mu)
        y = _ns_ref(G, steps=1)
        y = y / (torch.linalg.matrix_norm(y) + 1e-7)
        p = p * (1 - lr * wd) - lr * torch.linalg.matrix_norm(G) * y / (_cosh_rms(y) + 1e-8)
    return p


def _quantile_ref(x, q):
    """Linear-interpolation quantile from a sort (the paper's definition of the threshold)."""
    s = torch.sort(x.flatten()).values
    pos = q * (s.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def _root_ref(p, grads, lr=1e-3, mu=0.95, wd=0.1, q=0.9):
    p = p.clone()
    m, n = p.shape
    M = torch.zeros_like(p)
    for g in grads:
        M = mu * M + g
        u = g + mu * M
        eps = _quantile_ref(u.abs(), q) + 1e-9
        outlier = torch.sign(u) * torch.relu(u.abs() - eps)
        x = _ns_ref(u - outlier)
        p = p * (1 - lr * wd) - lr * 0.2 * math.sqrt(max(m, n)) * x
    return p


def _swan_ref(p, grads, lr=1e-3, eps=1e-8):
    p = p.clone()
    for g in grads:
        n = g.shape[1]
        mean = g.sum(dim=1, keepdim=True) / n
        std = torch.sqrt(((g - mean) ** 2).sum(dim=1, keepdim=True) / n)
        gt = (g - mean) / (std + eps)
        w = _ns_ref(gt)
        p = p - lr * w * torch.linalg.matrix_norm(gt) / (torch.linalg.matrix_norm(w) + eps)
    return p


REFERENCES = {
    "normuon": _normuon_ref,
    "adamuon": _adamuon_ref,
    "auon": _auon_ref,
    "hybrid_auon": _hybrid_auon_ref,
    "root": _root_ref,
    "swan": _swan_ref,
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_paper_reference(name, shape):
    grads = _grads(shape)
    got = _run_rule(name, shape, grads)
    want = REFERENCES[name](_p0(shape), grads)
    _close(got, want, 1e-12)


# ---------------------------------------------------------------------------------------------
# library oracles with Newton-Schulz patched to float64


@pytest.fixture
def fp64_ns(monkeypatch):
    monkeypatch.setattr(importlib.import_module("torch.optim._muon"), "_zeropower_via_newtonschulz", torch_ns_fp64)
    matrix = importlib.import_module("pytorch_optimizer.optimizer.utils.matrix")
    fp64 = functools.partial(matrix.zero_power_via_newton_schulz_5, dtype=torch.float64)
    for mod in ("pytorch_optimizer.optimizer.muon.base", "pytorch_optimizer.optimizer.muon.normuon"):
        monkeypatch.setattr(importlib.import_module(mod), "zero_power_via_newton_schulz_5", fp64)


def _run_oracle(make, shape, grads):
    p = torch.nn.Parameter(_p0(shape))
    return _drive(make([p]), p, grads)


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("shape", SHAPES)
def test_muon_matches_torch_muon(fp64_ns, shape, wd):
    grads = _grads(shape)
    want = _run_oracle(lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=wd), shape, grads)
    _close(_run_rule("muon", shape, grads, WD=wd), want, 1e-6)


def test_torch_muon_oracle_is_sensitive(fp64_ns):
    """The oracle comparison can fail: a different momentum gives a different trajectory."""
    grads = _grads((6, 4))
    want = _run_oracle(lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.0), (6, 4), grads)
    got = _run_rule("muon", (6, 4), grads, MOMENTUM=0.9)
    assert (got - want).abs().max() > 1e-4


@pytest.mark.parametrize("shape", SHAPES)
def test_muon_matches_pytorch_optimizer(fp64_ns, shape):
    import pytorch_optimizer as po

    grads = _grads(shape)
    want = _run_oracle(lambda ps: po.Muon([{"params": ps, "use_muon": True}], foreach=False), shape, grads)
    _close(_run_rule("muon", shape, grads), want, 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_normuon_matches_pytorch_optimizer_preserve_norm(fp64_ns, shape):
    import pytorch_optimizer as po

    grads = _grads(shape)
    make = lambda ps: po.NorMuon([{"params": ps, "use_muon": True}], foreach=False)  # noqa: E731
    _close(_run_rule("normuon", shape, grads), _run_oracle(make, shape, grads), 1e-6)


@pytest.mark.parametrize("gap,wd", [(2000, 0.0), (7, 0.1)])
@pytest.mark.parametrize("shape", SHAPES)
def test_conda_matches_pytorch_optimizer(shape, gap, wd):
    import pytorch_optimizer as po

    grads = _grads(shape)
    make = lambda ps: po.Conda(ps, update_proj_gap=gap, weight_decay=wd, foreach=False)  # noqa: E731
    got = _run_rule("conda", shape, grads, UPDATE_PROJ_GAP=gap, WD=wd)
    _close(got, _run_oracle(make, shape, grads), 1e-6)


@pytest.mark.parametrize("freq", [10, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_soap_matches_pytorch_optimizer(shape, freq):
    import pytorch_optimizer as po

    grads = _grads(shape)
    make = lambda ps: po.SOAP(ps, precondition_frequency=freq)  # noqa: E731
    got = _run_rule("soap", shape, grads, PRECONDITION_FREQUENCY=freq)
    _close(got, _run_oracle(make, shape, grads), 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_soap_leaves_dims_above_max_precond_dim_unrotated(shape):
    import pytorch_optimizer as po

    grads = _grads(shape)
    make = lambda ps: po.SOAP(ps, max_precondition_dim=5)  # noqa: E731
    got = _run_rule("soap", shape, grads, MAX_PRECOND_DIM=5)
    _close(got, _run_oracle(make, shape, grads), 1e-6)
    assert (got - _run_rule("soap", shape, grads)).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------
# the AdamW fallback for non-matrix roles


def _fallback_adamw(name, params):
    h = seeds.load(name).hparams
    return torch.optim.AdamW(
        params, lr=h["ADAMW_LR"], betas=(h["ADAMW_BETA1"], h["ADAMW_BETA2"]), eps=h["ADAMW_EPS"], weight_decay=h["ADAMW_WD"]
    )


@pytest.mark.parametrize("name", MATRIX_SEEDS)
def test_vector_role_is_adamw_fallback(name):
    shape = (7,)
    grads = _grads(shape)
    want = _run_oracle(lambda ps: _fallback_adamw(name, ps), shape, grads)
    _close(_run_rule(name, shape, grads, role="vector"), want, 1e-12)


@pytest.mark.parametrize("name", ["muon", "soap"])
def test_embedding_and_head_roles_use_the_fallback(name):
    grads = _grads((6, 4))
    want = _run_oracle(lambda ps: _fallback_adamw(name, ps), (6, 4), grads)
    for role in ("embedding", "head"):
        _close(_run_rule(name, (6, 4), grads, role=role), want, 1e-12)


def test_fallback_lr_follows_the_group_lr():
    """The protocol scales the group lr; the fallback must scale with it (lr * ADAMW_LR / LR)."""
    grads = _grads((5,))
    h = seeds.load("muon").hparams
    want = _run_oracle(lambda ps: torch.optim.AdamW(ps, lr=2 * h["ADAMW_LR"], betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0), (5,), grads)
    _close(_run_rule("muon", (5,), grads, role="vector", lr=2 * h["LR"]), want, 1e-12)


def test_muon_fallback_matches_pytorch_optimizer_adamw_group():
    import pytorch_optimizer as po

    grads = _grads((7,))
    want = _run_oracle(lambda ps: po.Muon([{"params": ps, "use_muon": False}], foreach=False), (7,), grads)
    _close(_run_rule("muon", (7,), grads, role="vector"), want, 1e-12)


# ---------------------------------------------------------------------------------------------
# conv weights are the flattened (out, -1) matrix; float32 runs NS in float32


@pytest.mark.parametrize("name", MATRIX_SEEDS)
def test_conv_is_flattened_matrix(name):
    conv = (4, 2, 3, 3)
    grads = _grads(conv, steps=12)
    got = _run_rule(name, conv, grads, role="conv")
    flat = [g.reshape(4, -1) for g in grads]
    rule = seeds.load(name)
    p = torch.nn.Parameter(_p0(conv).reshape(4, -1))
    want = _drive(RuleOptimizer([{"params": [p], "role": "hidden_matrix"}], rule), p, flat)
    _close(got.reshape(4, -1), want, 1e-12)


@pytest.mark.parametrize("name", MATRIX_SEEDS)
def test_float32_stays_float32_and_close_to_float64(name):
    # square, so SOAP's first eigenbases are unique (a rank-deficient factor has an arbitrary null basis)
    grads64 = _grads((5, 5), steps=10)
    got = _run_rule(name, (5, 5), [g.float() for g in grads64])
    assert got.dtype == torch.float32
    want = _run_rule(name, (5, 5), grads64)
    _close(got.double(), want, 1e-4)


# ---------------------------------------------------------------------------------------------
# invariances (reference A.4 step 3)


@pytest.mark.parametrize("shape", SHAPES + [(16, 16), (8, 32)])
def test_newton_schulz_output_has_spectral_norm_near_one(shape):
    ns = seeds.load("muon").module._newton_schulz
    u = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s = torch.linalg.svdvals(ns(u))
    # the quintic parks singular values in about (0.5, 1.5) rather than at 1 (KJ's docstring)
    assert 0.5 < s.min() and s.max() < 1.5 and 0.8 < s.max()
    assert torch.linalg.svdvals(u).max() / torch.linalg.svdvals(u).min() > 2  # the input was not already orthogonal


@pytest.mark.parametrize("shape", SHAPES)
def test_muon_direction_ignores_gradient_scale(shape):
    grads = _grads(shape)
    a, _ = _deltas("muon", shape, grads)
    b, _ = _deltas("muon", shape, [1e3 * g for g in grads])
    for x, y in zip(a, b):
        _close(x, y, 1e-7)  # only the 1e-7 in the NS normalisation is not scale-free


@pytest.mark.parametrize("shape", SHAPES)
def test_normuon_keeps_the_orthogonalized_norm(shape):
    g = _grads(shape, steps=1)
    (d,), rule = _deltas("normuon", shape, g)
    m, n = shape
    mu = rule.hparams["MOMENTUM"]
    o = rule.module._newton_schulz(g[0].lerp((1 - mu) * g[0], mu))  # u on the first step
    want = rule.lr * math.sqrt(max(1.0, m / n)) * o.norm()
    assert abs(d.norm() - want) < 1e-9 * want


@pytest.mark.parametrize("shape", SHAPES)
def test_adamuon_update_rms_is_02_lr(shape):
    deltas, rule = _deltas("adamuon", shape, _grads(shape), WD=0.0)
    for d in deltas:
        rms = d.square().mean().sqrt()
        assert abs(rms - 0.2 * rule.lr) < 1e-9


@pytest.mark.parametrize("name", ["auon", "hybrid_auon"])
def test_auon_update_norm_is_braked_momentum_norm(name):
    shape = (6, 4)
    grads = _grads(shape)
    deltas, rule = _deltas(name, shape, grads, WD=0.0)
    mu, gamma = rule.hparams["MOMENTUM"], rule.hparams["GAMMA"]
    buf = torch.zeros(shape, dtype=torch.float64)
    for g, d in zip(grads, deltas):
        G = _nesterov_lerp(g, buf, mu)
        # r = sqrt(mean cosh^2) of a unit-norm matrix lies in [1, cosh(gamma)], so the step norm does too
        ratio = d.norm() / (rule.lr * G.norm())
        assert 1 / math.cosh(gamma) - 1e-12 <= ratio <= 1 + 1e-12
    # AuON's step is homogeneous of degree one in the gradient (r is scale-free)
    scaled, _ = _deltas(name, shape, [3.0 * g for g in grads], WD=0.0)
    for x, y in zip(deltas, scaled):
        _close(3.0 * x, y, 1e-7)  # up to the 1e-7 in the normalisations


def test_root_clips_momentum_at_the_quantile():
    shape = (6, 4)
    grads = _grads(shape)
    rule = seeds.load("root")
    seen = []
    real = rule.module._newton_schulz

    def spy(b):
        seen.append(b.clone())
        return real(b)

    rule.module._newton_schulz = spy
    try:
        p = torch.nn.Parameter(_p0(shape))
        _drive(RuleOptimizer([{"params": [p], "role": "hidden_matrix"}], rule), p, grads)
    finally:
        rule.module._newton_schulz = real
    mu = rule.hparams["MOMENTUM"]
    M = torch.zeros(shape, dtype=torch.float64)
    for g, b in zip(grads, seen):
        M = mu * M + g
        u = g + mu * M
        eps = _quantile_ref(u.abs(), 0.9) + 1e-9
        assert b.abs().max() <= eps * (1 + 1e-12)
        inside = u.abs() <= eps
        _close(b[inside], u[inside], 1e-12)  # entries below the threshold pass unchanged
        assert (~inside).sum() >= 2  # the top 10% of 24 entries are clipped


def test_swan_is_invariant_to_row_affine_gradient_changes():
    shape = (6, 4)
    grads = _grads(shape, steps=5)
    gen = torch.Generator().manual_seed(9)
    scale = torch.rand(6, 1, generator=gen, dtype=torch.float64) * 10 + 0.1
    shift = torch.randn(6, 1, generator=gen, dtype=torch.float64) * 5
    a, _ = _deltas("swan", shape, grads)
    b, _ = _deltas("swan", shape, [scale * g + shift for g in grads])
    for x, y in zip(a, b):
        _close(x, y, 1e-9)
    assert seeds.load("swan").init(torch.zeros(shape), _ctx(shape)) == {}  # stateless on matrices


def _ctx(shape):
    from optforge.rule import Ctx

    return Ctx(lr=1e-3, t=1, T=None, role="hidden_matrix", shape=shape)


def _orthogonal(n, seed):
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.mark.parametrize("shape", SHAPES)
def test_conda_is_equivariant_to_rotating_the_columns(shape):
    """Adam in the momentum's singular basis: rotating g by R on the projected side rotates the update."""
    m, n = shape
    grads = _grads(shape)
    if m >= n:
        rot = _orthogonal(n, 5)
        turn = lambda x: x @ rot  # noqa: E731
    else:
        rot = _orthogonal(m, 5)
        turn = lambda x: rot @ x  # noqa: E731
    a, _ = _deltas("conda", shape, grads, WD=0.0)
    b, _ = _deltas("conda", shape, [turn(g) for g in grads], WD=0.0)
    for x, y in zip(a, b):
        _close(turn(x), y, 1e-12)
    plain, _ = _deltas("conda", shape, grads, WD=0.0, UPDATE_PROJ_GAP=1)
    assert max((x - y).abs().max() for x, y in zip(a, plain)) > 1e-6  # the refresh gap matters


def test_soap_first_step_does_not_move_and_rotations_commute():
    shape = (5, 5)
    grads = _grads(shape)
    a, _ = _deltas("soap", shape, grads, WD=0.0, PRECONDITION_FREQUENCY=4)
    assert torch.count_nonzero(a[0]) == 0
    assert a[1].abs().max() > 0
    left, right = _orthogonal(5, 6), _orthogonal(5, 7)
    b, _ = _deltas("soap", shape, [left @ g @ right for g in grads], WD=0.0, PRECONDITION_FREQUENCY=4)
    for x, y in zip(a, b):
        _close(left @ x @ right, y, 1e-10)


@pytest.mark.parametrize("name", MATRIX_SEEDS)
def test_state_is_tensors_and_python_numbers(name):
    shape = (6, 4)
    rule = seeds.load(name)
    p = torch.nn.Parameter(_p0(shape))
    opt = RuleOptimizer([{"params": [p], "role": "hidden_matrix"}], rule)
    _drive(opt, p, _grads(shape, steps=3))
    for key, value in opt.state[p].items():
        assert isinstance(value, (torch.Tensor, int, float)), f"{name}: state[{key!r}] is {type(value).__name__}"
