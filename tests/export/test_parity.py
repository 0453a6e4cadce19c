"""Parity table (issue 16): seeds run next to their torch.optim twin, exported and through RuleOptimizer.

Each seed with a torch.optim twin trains the same small float64 problem as the twin, in every
situation a training script puts an optimizer in: a group added mid-run, grads that come and go,
frozen neighbours, an empty tensor, a checkpoint resumed at another dtype, lr schedulers, closures,
`zero_grad(set_to_none=False)`. Both ways of running a rule are held to the twin: `RuleOptimizer`
over the loaded seed, and the class that `optforge export` renders. Seeds whose twin is another
library (pytorch-optimizer, lion-pytorch, schedulefree, came-pytorch) get the plain row only: some of
those count steps per group themselves. The twins are configured from the seed's own
hyperparameters by the builders of tests/seeds/test_oracles_elementwise.py.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from optforge import seeds
from optforge.export import render_module
from optforge.rule import RuleOptimizer
from torch_oracles import torch_ns_fp64


def _load_sibling(rel: str, name: str):
    path = Path(__file__).resolve().parents[1] / rel
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


oracles = _load_sibling("seeds/test_oracles_elementwise.py", "_parity_oracles")


def _adamw(params, hp):
    return torch.optim.AdamW(params, lr=hp["LR"], betas=(hp["BETA1"], hp["BETA2"]), eps=hp["EPS"],
                             weight_decay=hp["WD"], foreach=False)


def _muon(params, hp):
    return torch.optim.Muon(params, lr=hp["LR"], weight_decay=hp["WD"], momentum=hp["MOMENTUM"],
                            nesterov=hp["NESTEROV"], ns_coefficients=hp["NS_COEFFS"], ns_steps=hp["NS_STEPS"])


# seed -> (twin builder (params, hp), tolerance, parameter shapes)
MIXED = [(4, 3), (3,), (2, 5)]
MATRICES = [(4, 3), (3, 5), (2, 5)]  # torch.optim.Muon takes 2-D parameters only
TORCH_TWINS: dict[str, tuple[Callable, float, list]] = {
    "sgd": (oracles._sgd, 1e-12, MIXED),
    "nesterov": (lambda p, hp: oracles._sgd(p, hp, nesterov=True), 1e-12, MIXED),
    "adam": (oracles._adam, 1e-12, MIXED),
    "amsgrad": (lambda p, hp: oracles._adam(p, hp, amsgrad=True), 1e-12, MIXED),
    "adamw": (_adamw, 1e-12, MIXED),
    "nadam": (oracles._nadam, 1e-12, MIXED),
    "radam": (oracles._radam, 1e-12, MIXED),
    "adagrad": (oracles._adagrad, 1e-12, MIXED),
    "rmsprop": (oracles._rmsprop, 1e-12, MIXED),
    "adafactor": (oracles._adafactor, 1e-12, MIXED),
    "muon": (_muon, 1e-6, MATRICES),  # Newton-Schulz: the seed's fp64 path vs torch's, patched to fp64
}
# torch 2.13's Adafactor divides by an empty tensor's numel (ZeroDivisionError): its twin runs without it
TWIN_FAILS_ON_EMPTY = {"adafactor"}
LIBRARY_TWINS: dict[str, Callable] = {
    "lion": oracles._lion, "signum": oracles._signum, "adan": oracles._adan, "adabelief": oracles._adabelief,
    "grams": oracles._grams, "diffgrad": oracles._diffgrad, "came": oracles._came,
    "schedule_free_adamw": oracles._schedule_free,
}


@pytest.fixture(autouse=True)
def _float64_and_fp64_newton_schulz(monkeypatch):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    ns = importlib.import_module("torch.optim._muon")
    monkeypatch.setattr(ns, "_zeropower_via_newtonschulz", torch_ns_fp64)
    yield
    torch.set_default_dtype(old)


_EXPORTED: dict[str, type] = {}


def exported_class(name: str) -> type:
    """The optimizer class `optforge export NAME` renders, imported from its text."""
    if name not in _EXPORTED:
        text = render_module(seeds.source(name), class_name="Exported")
        mod_name = f"_parity_exported_{name}"
        module = type(sys)(mod_name)
        sys.modules[mod_name] = module  # dataclasses in the module look themselves up there
        exec(compile(text, f"<exported {name}>", "exec"), module.__dict__)
        _EXPORTED[name] = module.Exported
    return _EXPORTED[name]


def makers(name: str) -> dict[str, Callable[[list], torch.optim.Optimizer]]:
    return {
        "rule": lambda ps: RuleOptimizer(ps, seeds.load(name)),
        "exported": lambda ps: exported_class(name)(ps),
    }


# ---------------------------------------------------------------------------------------------
# the problem: a fixed smooth loss over a few tensors; `active` picks the tensors in it this step


class Problem:
    def __init__(self, shapes: list[tuple], dtype=torch.float64, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        self.targets = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        self.scales = [torch.rand(s, generator=gen, dtype=torch.float64) + 0.5 for s in shapes]
        self.dtype = dtype

    def params(self, dtype=None) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(x.to(dtype or self.dtype).clone()) for x in self.init]

    def loss(self, params: list[torch.Tensor], step: int, active=None) -> torch.Tensor:
        total = params[0].new_zeros(())
        for i, p in enumerate(params):
            if active is not None and i not in active:
                continue
            d = (p - self.targets[i].to(p.dtype)) * self.scales[i].to(p.dtype)
            total = total + d.pow(2).sum() * (1 + 0.3 * (step % 3)) + 0.1 * p.sin().sum()
        return total


def train(opt, params, problem: Problem, steps: range, active=lambda step: None, set_to_none=True, closure=False,
          scheduler=None):
    for step in steps:
        opt.zero_grad(set_to_none=set_to_none)

        def compute(step=step):
            loss = problem.loss(params, step, active(step))
            loss.backward()
            return loss

        if closure:
            opt.zero_grad(set_to_none=set_to_none)
            loss = opt.step(compute)
            assert torch.is_tensor(loss)
        else:
            compute()
            opt.step()
        if scheduler is not None:
            scheduler.step()


# ---------------------------------------------------------------------------------------------
# situations: (make_opt, shapes) -> the parameters at the end (a list of tensors)


def plain(make, shapes):
    prob = Problem(shapes)
    ps = prob.params()
    train(make(ps), ps, prob, range(6))
    return ps


def added_group(make, shapes):
    prob = Problem(shapes)
    ps = prob.params()
    opt = make(ps[:1])
    train(opt, ps, prob, range(2), active=lambda s: {0})
    opt.add_param_group({"params": ps[1:], "lr": opt.param_groups[0]["lr"] * 0.5})
    train(opt, ps, prob, range(2, 6))
    return ps


def grads_come_and_go(make, shapes):
    # tensor 1 has no grad (None) on steps 0-2 and 4: its own step count must not move then
    prob = Problem(shapes)
    ps = prob.params()
    train(make(ps), ps, prob, range(7), active=lambda s: {0, 2} if s in (0, 1, 2, 4) else None)
    return ps


def frozen_neighbours(make, shapes):
    prob = Problem(shapes)
    ps = prob.params()
    ps[1].requires_grad_(False)
    train(make(ps), ps, prob, range(5))
    assert torch.equal(ps[1], prob.init[1])
    return ps


def empty_tensor(make, shapes):
    prob = Problem(shapes)
    ps = prob.params()
    empty = torch.nn.Parameter(torch.zeros(0, shapes[0][-1]))
    opt = make(ps + [empty])
    for step in range(5):
        opt.zero_grad()
        (prob.loss(ps, step) + empty.sum()).backward()
        opt.step()
    assert empty.shape == (0, shapes[0][-1])
    return ps


def scheduled(make, shapes):
    prob = Problem(shapes)
    ps = prob.params()
    opt = make(ps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 + 0.5 * (s % 2))
    train(opt, ps, prob, range(6), scheduler=sched)
    return ps


def with_closure(make, shapes):
    prob = Problem(shapes)
    ps = prob.params()
    train(make(ps), ps, prob, range(5), closure=True)
    return ps


def zero_grad_keeps_zeros(make, shapes):
    # zero_grad(set_to_none=False): a tensor out of the loss has a zero grad, and is stepped
    prob = Problem(shapes)
    ps = prob.params()
    train(make(ps), ps, prob, range(6), active=lambda s: {0} if s % 2 else None, set_to_none=False)
    return ps


def checkpoint_to(dtype):
    def resume(make, shapes):
        # 3 steps at float64, a state_dict, a model cast to `dtype`, a new optimizer, 3 more steps
        prob = Problem(shapes)
        ps = prob.params()
        opt = make(ps)
        train(opt, ps, prob, range(3))
        saved = copy.deepcopy(opt.state_dict())
        ps2 = [torch.nn.Parameter(p.detach().to(dtype)) for p in ps]
        opt2 = make(ps2)
        opt2.load_state_dict(saved)
        train(opt2, ps2, prob, range(3, 6))
        for p in ps2:
            for key, v in opt2.state[p].items():
                if torch.is_tensor(v) and v.is_floating_point() and v.ndim > 0 and key != "_train_point":
                    assert v.dtype == dtype, (key, v.dtype)
        return ps2

    resume.__name__ = f"checkpoint_to_{str(dtype).split('.')[-1]}"
    return resume


def complex_params(make, shapes):
    # torch.optim steps a complex tensor as its real view (..., 2)
    prob = Problem(shapes)
    ps = [torch.nn.Parameter(torch.complex(x, 0.5 * t)) for x, t in zip(prob.init, prob.targets)]
    opt = make(ps)
    for step in range(5):
        opt.zero_grad()
        loss = sum(((p - t).abs().pow(2) * s).sum() + 0.1 * p.real.sin().sum()
                   for p, t, s in zip(ps, prob.targets, prob.scales))
        loss.backward()
        opt.step()
    return [torch.view_as_real(p) for p in ps]


SITUATIONS = [plain, added_group, grads_come_and_go, frozen_neighbours, empty_tensor, scheduled, with_closure,
              zero_grad_keeps_zeros, checkpoint_to(torch.float32), complex_params]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x.detach().double() - y.detach().double()).abs().max()) for x, y in zip(a, b))


# torch 2.13's Adafactor and Muon refuse complex parameters; their seeds would step the real view
# (..., 2) as a 3-D tensor, which is not what a matrix method means: no row for them
TWIN_REFUSES_COMPLEX = {"adafactor", "muon"}
ROWS = [(name, situation) for name in TORCH_TWINS for situation in SITUATIONS
        if not (situation is complex_params and name in TWIN_REFUSES_COMPLEX)]


@pytest.mark.parametrize("how", ["rule", "exported"])
@pytest.mark.parametrize("name,situation", ROWS, ids=[f"{n}-{s.__name__}" for n, s in ROWS])
def test_matches_torch_optim_twin(name, situation, how):
    twin, tol, shapes = TORCH_TWINS[name]
    hp = dict(seeds.load(name).hparams)
    if name in TWIN_FAILS_ON_EMPTY:
        want = situation(lambda ps: twin([p for p in ps if p.numel()], hp), shapes)
    else:
        want = situation(lambda ps: twin(ps, hp), shapes)
    got = situation(makers(name)[how], shapes)
    if situation.__name__.startswith("checkpoint_to_float32"):
        tol = max(tol, 1e-5)  # three steps in float32
    diff = _max_diff(got, want)
    assert diff < tol, f"{name} {how} {situation.__name__}: max |got - twin| = {diff:.3g}"


@pytest.mark.parametrize("how", ["rule", "exported"])
@pytest.mark.parametrize("name", list(LIBRARY_TWINS))
def test_matches_library_twin_plain(name, how):
    hp = dict(seeds.load(name).hparams)
    want = plain(lambda ps: LIBRARY_TWINS[name](ps, hp), MIXED)
    got = plain(makers(name)[how], MIXED)
    diff = _max_diff(got, want)
    assert diff < 1e-9, f"{name} {how}: max |got - twin| = {diff:.3g}"


def test_the_table_covers_every_seed_with_a_twin():
    assert set(TORCH_TWINS) | set(LIBRARY_TWINS) <= set(seeds.names())
    assert hasattr(torch.optim, "Muon") and hasattr(torch.optim, "Adafactor")


# A rule from `load_rule` lives in a module that is not in sys.modules, and dynamo imports the module of
# every function it inlines to guard its globals; the exported class (imported like any module) compiles.
NOT_IMPORTABLE = pytest.mark.xfail(strict=True, raises=torch._dynamo.exc.InternalTorchDynamoError,
                                   reason="load_rule's module is not in sys.modules (dynamo imports it)")


@pytest.mark.slow
@pytest.mark.parametrize("how", [pytest.param("rule", marks=NOT_IMPORTABLE), "exported"])
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_compiled_training_step_matches_twin(name, how):
    twin, tol, shapes = TORCH_TWINS[name]
    hp = dict(seeds.load(name).hparams)

    def compiled(make):
        prob = Problem(shapes)
        ps = prob.params()
        opt = make(ps)

        @torch.compile(backend="aot_eager")  # inductor needs a C toolchain and matching sympy; not the point here
        def step_fn():
            opt.zero_grad()
            prob.loss(ps, 0).backward()  # a fixed step: dynamo's symbolic `step % 3` trips a sympy bug
            opt.step()

        for _ in range(4):
            step_fn()
        return ps

    want = compiled(lambda ps: twin(ps, hp))
    got = compiled(makers(name)[how])
    assert _max_diff(got, want) < 1e-9


@pytest.mark.parametrize("how", ["rule", "exported"])
def test_schedule_free_checkpoint_taken_in_eval_mode_resumes_bit_identically(how):
    # regression row for ../shared/cases/schedulefree-eval-checkpoint (facebookresearch/schedule_free#32):
    # several role groups of different sizes, saved in eval mode, resumed by a fresh optimizer
    from optforge.rule import param_groups

    def make_model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.LayerNorm(12), torch.nn.ReLU(),
                                   torch.nn.Linear(12, 12), torch.nn.ReLU(), torch.nn.Linear(12, 2))

    def batches(n, seed):
        g = torch.Generator().manual_seed(seed)
        return [(torch.randn(16, 6, generator=g), torch.randn(16, 2, generator=g)) for _ in range(n)]

    def steps(model, opt, data):
        for x, y in data:
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            opt.step()

    make = makers("schedule_free_adamw")[how]
    model = make_model()
    opt = make(param_groups(model))
    steps(model, opt, batches(5, 1))
    opt.eval()
    ckpt = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict())}
    opt.train()
    steps(model, opt, batches(3, 2))
    model2 = make_model()
    model2.load_state_dict(ckpt["model"])
    opt2 = make(param_groups(model2))
    opt2.load_state_dict(ckpt["opt"])
    opt2.train()
    steps(model2, opt2, batches(3, 2))
    assert len(ckpt["opt"]["param_groups"]) > 1
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
