"""Oracle tests for the elementwise seeds (issue 3; reference A.4).

Each seed runs through `RuleOptimizer` next to an installable reference implementation (torch.optim,
pytorch_optimizer, lion_pytorch, schedulefree, came_pytorch), in float64, on one fixed gradient
sequence, for a 6x4, a 4x6 and a 1-D tensor, 30 steps, with the lr changed every step (so a seed that
reads `LR` instead of `ctx.lr` fails). The oracle is configured from the seed's own hyperparameters
(`rule.hparams`). MARS has no installable exact oracle: it is checked against a test-only reference
written from the paper's equations (official conventions), plus equivalences and invariances.
"""

from __future__ import annotations

import copy
import math

import came_pytorch
import lion_pytorch
import pytest
import pytorch_optimizer as po
import schedulefree
import torch

from optforge import seeds
from optforge.rule import RuleOptimizer

SHAPES = [(6, 4), (4, 6), (5,)]
STEPS = 30
TOL = 1e-12  # A.4: exact oracles agree to ~1e-16 in float64; 1e-12 leaves room for 30 steps


@pytest.fixture(autouse=True)
def _float64_default():
    # torch keeps some per-tensor scalars (NAdam's mu_product, step counters) as tensors of the
    # default dtype; float64 keeps them exact, as the seeds' Python floats are.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _gradients(steps: int = STEPS, seed: int = 0) -> list[list[torch.Tensor]]:
    """A fixed gradient sequence whose scale varies over 3 decades, so clipping sometimes binds."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        scale = 10 ** (3 * torch.rand((), generator=gen, dtype=torch.float64).item() - 2)
        out.append([torch.randn(s, generator=gen, dtype=torch.float64) * scale for s in SHAPES])
    return out


def _init_params(seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]


def _lr_at(base: float, t: int) -> float:
    return base * (0.55 + 0.45 * math.cos(t))


def _params(init: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(x.clone()) for x in init]


def _run(opt_params, opt, grads, base_lr, *, on_step=None):
    for t, gs in enumerate(grads, start=1):
        for group in opt.param_groups:
            group["lr"] = _lr_at(base_lr, t)
        for p, g in zip(opt_params, gs):
            p.grad = g.clone()  # several oracles modify p.grad in place
        opt.step()
        if on_step is not None:
            on_step(t)


def _max_diff(a, b) -> float:
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# oracle builders: (params, hp) -> optimizer, hp = the seed's hyperparameters


def _betas(hp, n=2):
    return tuple(hp[f"BETA{i}"] for i in range(1, n + 1))


def _sgd(params, hp, nesterov=False):
    return torch.optim.SGD(
        params, lr=hp["LR"], momentum=hp["MOMENTUM"], dampening=hp["DAMPENING"],
        weight_decay=hp["WD"], nesterov=nesterov, foreach=False,
    )


def _adam(params, hp, amsgrad=False):
    return torch.optim.Adam(
        params, lr=hp["LR"], betas=_betas(hp), eps=hp["EPS"], weight_decay=hp["WD"], amsgrad=amsgrad, foreach=False
    )


def _nadam(params, hp):
    return torch.optim.NAdam(
        params, lr=hp["LR"], betas=_betas(hp), eps=hp["EPS"], weight_decay=hp["WD"],
        momentum_decay=hp["MOMENTUM_DECAY"], foreach=False,
    )


def _radam(params, hp):
    return torch.optim.RAdam(params, lr=hp["LR"], betas=_betas(hp), eps=hp["EPS"], weight_decay=hp["WD"], foreach=False)


def _adagrad(params, hp):
    return torch.optim.Adagrad(
        params, lr=hp["LR"], lr_decay=hp["DECAY_RATE"], weight_decay=hp["WD"],
        initial_accumulator_value=hp["INITIAL_ACCUMULATOR_VALUE"], eps=hp["EPS"], foreach=False,
    )


def _rmsprop(params, hp):
    return torch.optim.RMSprop(
        params, lr=hp["LR"], alpha=hp["ALPHA"], eps=hp["EPS"], weight_decay=hp["WD"],
        momentum=hp["MOMENTUM"], centered=hp["CENTERED"], foreach=False,
    )


def _adafactor(params, hp):
    return torch.optim.Adafactor(
        params, lr=hp["LR"], beta2_decay=hp["DECAY_RATE"], eps=(hp.get("EPS1"), hp["EPS2"]), d=hp["D"],
        weight_decay=hp["WD"], foreach=False,
    )


def _lion(params, hp):
    return lion_pytorch.Lion(params, lr=hp["LR"], betas=_betas(hp), weight_decay=hp["WD"])


def _signum(params, hp):
    return po.SignSGD(params, lr=hp["LR"], momentum=hp["MOMENTUM"], weight_decay=hp["WD"], weight_decouple=True, foreach=False)


def _adan(params, hp):
    # weight_decouple=False is the official prox form p <- (p - lr u) / (1 + lr wd)
    return po.Adan(params, lr=hp["LR"], betas=_betas(hp, 3), weight_decay=hp["WD"], weight_decouple=False, eps=hp["EPS"])


def _adabelief(params, hp):
    return po.AdaBelief(
        params, lr=hp["LR"], betas=_betas(hp), weight_decay=hp["WD"], weight_decouple=True, rectify=False,
        eps=hp["EPS"], foreach=False,
    )


def _grams(params, hp):
    return po.Grams(params, lr=hp["LR"], betas=_betas(hp), weight_decay=hp["WD"], weight_decouple=True, eps=hp["EPS"])


def _diffgrad(params, hp):
    # the original diffGrad couples the decay (L2); po adds 1e-15 inside the sqrt (A.4: ~2e-13)
    return po.DiffGrad(
        params, lr=hp["LR"], betas=_betas(hp), weight_decay=hp["WD"], weight_decouple=False, eps=hp["EPS"],
        foreach=False,
    )


def _came(params, hp):
    return came_pytorch.CAME(
        params, lr=hp["LR"], eps=(hp["EPS1"], hp["EPS2"]), clip_threshold=hp["CLIP_THRESHOLD"],
        betas=_betas(hp, 3), weight_decay=hp["WD"],
    )


def _schedule_free(params, hp):
    opt = schedulefree.AdamWScheduleFree(
        params, lr=hp["LR"], betas=_betas(hp), eps=hp["EPS"], weight_decay=hp["WD"],
        warmup_steps=hp["WARMUP_STEPS"], r=hp["R"], weight_lr_power=hp["WEIGHT_LR_POWER"],
    )
    opt.train()  # the library starts in eval mode
    return opt


# (seed, hyperparameter overrides, oracle). The overrides switch on the paths the defaults leave
# off (weight decay, centered/momentum RMSprop, Adagrad's decay, schedule-free warmup and r), and
# raise tiny eps values so that where eps sits is visible at the tolerance.
WD = {"WD": 0.1}
CASES = [
    ("sgd", {}, _sgd),
    ("sgd", {"WD": 0.1, "DAMPENING": 0.3}, _sgd),
    ("nesterov", {}, lambda p, hp: _sgd(p, hp, nesterov=True)),
    ("nesterov", WD, lambda p, hp: _sgd(p, hp, nesterov=True)),
    ("adam", {}, _adam),
    ("adam", WD, _adam),
    ("amsgrad", {}, lambda p, hp: _adam(p, hp, amsgrad=True)),
    ("amsgrad", WD, lambda p, hp: _adam(p, hp, amsgrad=True)),
    ("nadam", {}, _nadam),
    ("nadam", WD, _nadam),
    ("radam", {}, _radam),
    ("radam", WD, _radam),
    ("adagrad", {}, _adagrad),
    ("adagrad", {"WD": 0.1, "DECAY_RATE": 0.05, "INITIAL_ACCUMULATOR_VALUE": 0.1}, _adagrad),
    ("rmsprop", {}, _rmsprop),
    ("rmsprop", {"WD": 0.1, "MOMENTUM": 0.9, "CENTERED": True}, _rmsprop),
    ("adafactor", {}, _adafactor),
    ("adafactor", {"WD": 0.1, "D": 1.5}, _adafactor),
    ("lion", {}, _lion),
    ("lion", {"WD": 1.0}, _lion),
    ("signum", {}, _signum),
    ("signum", {"WD": 1.0}, _signum),
    ("adan", {}, _adan),
    ("adan", {"WD": 1.0, "EPS": 1e-3}, _adan),
    ("adabelief", {}, _adabelief),
    ("adabelief", {"WD": 1.0, "EPS": 1e-3}, _adabelief),
    ("grams", {}, _grams),
    ("grams", {"WD": 1.0, "EPS": 1e-3}, _grams),
    ("diffgrad", {}, _diffgrad),
    ("diffgrad", {"WD": 0.1, "EPS": 1e-3}, _diffgrad),
    ("came", {}, _came),
    ("came", {"WD": 1.0, "EPS2": 1e-3}, _came),
    ("schedule_free_adamw", {}, _schedule_free),
    ("schedule_free_adamw", {"WD": 0.1, "WARMUP_STEPS": 7, "R": 0.5}, _schedule_free),
]


def _case_id(case) -> str:
    name, over, _ = case
    return name + ("" if not over else "-" + "-".join(f"{k.lower()}{v}" for k, v in over.items()))


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_seed_matches_oracle(case):
    name, overrides, make_oracle = case
    rule = seeds.load(name)
    if overrides:
        rule = rule.with_hparams(**overrides)
    hp = dict(rule.hparams)
    init, grads = _init_params(), _gradients()
    ours, theirs = _params(init), _params(init)
    opt_ours = RuleOptimizer(ours, rule)
    opt_theirs = make_oracle(theirs, hp)
    worst = {"train": 0.0, "eval": 0.0}

    def compare(t):
        worst["train"] = max(worst["train"], _max_diff(ours, theirs))
        if rule.eval_point is not None and t % 10 == 0:
            opt_ours.eval()
            opt_theirs.eval()
            worst["eval"] = max(worst["eval"], _max_diff(ours, theirs))
            moved = _max_diff(ours, init)
            assert moved > 1e-4, "the eval point equals the start: nothing was compared"
            opt_ours.train()
            opt_theirs.train()

    base = hp["LR"]
    for t, gs in enumerate(grads, start=1):
        for opt in (opt_ours, opt_theirs):
            for group in opt.param_groups:
                group["lr"] = _lr_at(base, t)
        for ps in (ours, theirs):
            for p, g in zip(ps, gs):
                p.grad = g.clone()
        opt_ours.step()
        opt_theirs.step()
        compare(t)
    assert worst["train"] <= TOL, f"{name}: max |diff| {worst['train']:.3g} against the oracle"
    assert worst["eval"] <= TOL, f"{name}: eval point max |diff| {worst['eval']:.3g} against the oracle"
    # guard against a vacuous pass (both sides standing still)
    assert _max_diff(ours, init) > 1e-4, f"{name}: the parameters barely moved; the comparison says nothing"


def test_every_elementwise_seed_is_covered():
    covered = {c[0] for c in CASES} | {"mars"}
    mine = {
        "sgd", "nesterov", "adam", "amsgrad", "nadam", "radam", "adagrad", "rmsprop", "adafactor", "lion",
        "signum", "adan", "adabelief", "grams", "diffgrad", "came", "mars", "schedule_free_adamw",
    }
    assert mine <= set(seeds.names())
    assert mine == covered


# ---------------------------------------------------------------------------------------------
# invariances (A.4)


@pytest.mark.parametrize("name", ["lion", "signum"])
@pytest.mark.parametrize("c", [4.0, 1000.0])
def test_sign_methods_are_invariant_to_gradient_scale(name, c):
    rule = seeds.load(name)
    init, grads = _init_params(), _gradients()
    a, b = _params(init), _params(init)
    _run(a, RuleOptimizer(a, rule), grads, rule.lr)
    _run(b, RuleOptimizer(b, rule), [[g * c for g in gs] for gs in grads], rule.lr)
    assert _max_diff(a, init) > 1e-4
    assert _max_diff(a, b) == 0.0


def test_grams_update_takes_the_sign_of_the_gradient():
    rule = seeds.load("grams")
    init, grads = _init_params(), _gradients()
    ps = _params(init)
    opt = RuleOptimizer(ps, rule)
    for t, gs in enumerate(grads, start=1):
        before = [p.detach().clone() for p in ps]
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        opt.step()
        for p, b, g in zip(ps, before, gs):
            assert torch.all((p - b) * g <= 0), f"step {t}: a coordinate moved along its gradient"


# ---------------------------------------------------------------------------------------------
# MARS: a test-only reference from the paper's equations, with the official code's conventions


class MarsReference(torch.optim.Optimizer):
    """MARS-AdamW "approx" (Yuan et al. 2024, Alg. 1 with the last gradient standing in for the new
    batch's gradient at the old point): c_t = g_t + gamma b1/(1-b1) (g_t - g_{t-1}), clipped to unit
    Frobenius norm; AdamW on c_t. Exactly-2-D tensors only; others get AdamW with the 1-D settings."""

    def __init__(self, params, hp):
        super().__init__(params, {"lr": hp["LR"]})
        self.hp = hp

    @torch.no_grad()
    def step(self):
        hp = self.hp
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p), last=torch.zeros_like(p))
                st["t"] += 1
                t, g = st["t"], p.grad.clone()
                if p.ndim == 2:
                    b1, b2, wd, lr = hp["BETA1"], hp["BETA2"], hp["WD"], group["lr"]
                    c = g + hp["GAMMA"] * b1 / (1 - b1) * (g - st["last"])
                    n = float(torch.linalg.vector_norm(c))
                    if n > 1:
                        c = c / n
                    st["last"] = g
                else:
                    b1, b2, wd = hp["BETA1_1D"], hp["BETA2_1D"], hp["WD_1D"]
                    lr, c = group["lr"] * hp["LR_1D"] / hp["LR"], g
                st["m"] = b1 * st["m"] + (1 - b1) * c
                st["v"] = b2 * st["v"] + (1 - b2) * c * c
                m_hat = st["m"] / (1 - b1**t)
                v_hat = st["v"] / (1 - b2**t)
                p -= lr * (wd * p + m_hat / (v_hat.sqrt() + hp["EPS"]))


@pytest.mark.parametrize("overrides", [{}, {"WD": 0.1, "GAMMA": 0.1}], ids=["defaults", "wd-gamma"])
def test_mars_matches_paper_reference(overrides):
    rule = seeds.load("mars").with_hparams(**overrides) if overrides else seeds.load("mars")
    init, grads = _init_params(), _gradients()
    ours, theirs = _params(init), _params(init)
    _run(ours, RuleOptimizer(ours, rule), grads, rule.lr)
    _run(theirs, MarsReference(theirs, dict(rule.hparams)), grads, rule.lr)
    assert _max_diff(ours, init) > 1e-4
    assert _max_diff(ours, theirs) <= TOL


def test_mars_without_correction_is_adamw_and_non_2d_is_adamw_1d():
    """gamma = 0 and gradients of norm < 1: the 2-D path is torch AdamW with MARS's betas; the 1-D
    (and 3-D) path is torch AdamW with betas_1d and wd_1d at lr * LR_1D / LR, whatever the gradients."""
    rule = seeds.load("mars").with_hparams(GAMMA=0.0, WD=0.1, LR_1D=1e-3)
    hp = rule.hparams
    shapes = [(6, 4), (4, 6), (5,), (3, 2, 2)]
    gen = torch.Generator().manual_seed(3)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) * 0.05 for s in shapes] for _ in range(STEPS)]
    assert all(float(g.norm()) < 1 for gs in grads for g in gs[:2])
    ours = _params(init)
    _run(ours, RuleOptimizer(ours, rule), grads, rule.lr)
    mat, vec = _params(init[:2]), _params(init[2:])
    ref = torch.optim.AdamW(
        [
            {"params": mat, "betas": (hp["BETA1"], hp["BETA2"]), "weight_decay": hp["WD"]},
            {"params": vec, "betas": (hp["BETA1_1D"], hp["BETA2_1D"]), "weight_decay": hp["WD_1D"]},
        ],
        lr=hp["LR"], eps=hp["EPS"], foreach=False,
    )
    for t, gs in enumerate(grads, start=1):
        ref.param_groups[0]["lr"] = _lr_at(hp["LR"], t)
        ref.param_groups[1]["lr"] = _lr_at(hp["LR"], t) * hp["LR_1D"] / hp["LR"]
        for p, g in zip(mat + vec, gs):
            p.grad = g.clone()
        ref.step()
    assert _max_diff(ours, mat + vec) <= TOL


def test_mars_clipped_update_is_invariant_to_gradient_scale():
    """When every corrected gradient has norm > 1 it is normalised, so g -> c g changes nothing
    (2-D tensors; the 1-D AdamW path is scale-invariant only up to eps)."""
    rule = seeds.load("mars")
    gen = torch.Generator().manual_seed(4)
    init = [torch.randn(6, 4, generator=gen, dtype=torch.float64)]
    grads = [[torch.randn(6, 4, generator=gen, dtype=torch.float64) * 10] for _ in range(STEPS)]
    a, b = _params(init), _params(init)
    _run(a, RuleOptimizer(a, rule), grads, rule.lr)
    _run(b, RuleOptimizer(b, rule), [[g * 8 for g in gs] for gs in grads], rule.lr)
    assert _max_diff(a, init) > 1e-4
    assert _max_diff(a, b) <= TOL


# ---------------------------------------------------------------------------------------------
# state round trip (Python-number state included: NAdam's mu product, schedule-free weight sums)


@pytest.mark.parametrize("name", sorted({c[0] for c in CASES} | {"mars"}))
def test_state_dict_round_trip_continues_identically(name):
    rule = seeds.load(name)
    init, grads = _init_params(), _gradients(20)
    a = _params(init)
    opt_a = RuleOptimizer(a, rule)
    _run(a, opt_a, grads[:10], rule.lr)
    saved = copy.deepcopy(opt_a.state_dict())
    b = _params([p.detach() for p in a])
    opt_b = RuleOptimizer(b, rule)
    opt_b.load_state_dict(saved)
    for st in opt_b.state.values():
        for v in st.values():
            assert isinstance(v, (torch.Tensor, int, float)), f"{name}: state holds a {type(v).__name__}"
    rest = grads[10:]
    for opt, ps in ((opt_a, a), (opt_b, b)):
        for t, gs in enumerate(rest, start=11):
            for group in opt.param_groups:
                group["lr"] = _lr_at(rule.lr, t)
            for p, g in zip(ps, gs):
                p.grad = g.clone()
            opt.step()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
