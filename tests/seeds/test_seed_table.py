"""One shared table runs every bundled seed through the same checks (optax alias_test style):
contract and docstring, bad hyperparameters, state_dict continuation, and loss reduction on a
quadratic, Rosenbrock and a small MLP on scikit-learn digits (matrices, biases and a head)."""

import ast
import copy

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from optforge import seeds
from optforge.rule import RuleError, RuleOptimizer, check_rule, param_groups

REQUIRED = [
    "sgd", "nesterov", "adam", "adamw", "amsgrad", "nadam", "radam", "adagrad", "rmsprop", "adafactor",
    "lion", "signum", "adan", "adabelief", "grams", "diffgrad", "came", "mars", "schedule_free_adamw",
    "soap", "muon", "normuon", "adamuon", "auon", "hybrid_auon", "root", "swan", "conda",
]
ALL = seeds.names()


def test_required_seeds_are_bundled():
    missing = sorted(set(REQUIRED) - set(ALL))
    assert not missing, f"missing seeds: {missing}"


@pytest.mark.parametrize("name", ALL)
def test_contract_and_docstring(name):
    src = seeds.source(name)
    assert check_rule(src) == []
    doc = ast.get_docstring(ast.parse(src)) or ""
    assert "Paper:" in doc, f"{name}: docstring must name the paper"
    assert "<-" in doc or "=" in doc, f"{name}: docstring must give the update formula"
    rule = seeds.load(name)
    assert rule.lr > 0
    assert all(k.isupper() for k in rule.hparams)


@pytest.mark.parametrize("name", ALL)
def test_bad_hyperparameters_are_rejected(name):
    rule = seeds.load(name)
    with pytest.raises(RuleError, match="LR=-0.1 must be > 0"):
        rule.with_hparams(LR=-0.1)
    with pytest.raises(RuleError, match="has no hyperparameter 'NOT_A_KNOB'"):
        rule.with_hparams(NOT_A_KNOB=1.0)
    betas = [k for k in rule.hparams if k.startswith("BETA") and isinstance(rule.hparams[k], float)]
    for k in betas:
        with pytest.raises(RuleError, match=rf"{k}=1.5 must be in \[0, 1\)"):
            rule.with_hparams(**{k: 1.5})


def _digits(n=512):
    d = load_digits()
    x = torch.tensor(d.data[:n], dtype=torch.float32) / 16.0
    y = torch.tensor(d.target[:n])
    return x, y


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


LR_MULTS = (1.0, 10**0.5, 10.0)
"""Loss reduction is checked at the first of these lr multipliers that works, as the evaluation
protocol tunes the lr multiplier: official defaults like Lion's 1e-4 are meant for long runs."""


def _first_passing(run, ok):
    results = []
    for mult in LR_MULTS:
        before, after = run(mult)
        results.append((mult, before, after))
        if after == after and ok(before, after):
            return True, results
    return False, results


def _run_mlp(name, steps, start=None, opt_state=None, seed=0, lr_mult=1.0):
    torch.manual_seed(0)
    model = _MLP()
    if start is not None:
        model.load_state_dict(start)
    rule = seeds.load(name)
    opt = RuleOptimizer(param_groups(model), rule, lr=rule.lr * lr_mult, total_steps=steps)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    x, y = _digits()
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model, opt, losses


def _descend(opt, loss_fn, steps):
    """(loss before, loss after) `steps` full-batch steps of `opt` on `loss_fn`, read in eval mode."""
    before = float(loss_fn().detach())
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    opt.eval()
    return before, float(loss_fn().detach())


def _full_loss(model):
    x, y = _digits()
    opt_mode = model.training
    with torch.no_grad():
        out = float(nn.functional.cross_entropy(model(x), y))
    model.train(opt_mode)
    return out


@pytest.mark.parametrize("name", ALL)
def test_lowers_mlp_digits_loss(name):
    torch.manual_seed(0)
    before = _full_loss(_MLP())

    def run(mult):
        model, opt, _ = _run_mlp(name, 150, lr_mult=mult)
        opt.eval()
        return before, _full_loss(model)

    ok, results = _first_passing(run, lambda b, a: a < 0.8 * b)
    assert ok, f"{name}: digits CE (lr mult, before, after): {results}"


@pytest.mark.parametrize("name", ALL)
def test_lowers_quadratic_loss(name):
    def run(mult):
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(8, 8, generator=gen) / 8**0.5 + torch.eye(8)
        target = torch.randn(8, 6, generator=gen)
        # small random start: relative-step rules (Adafactor) cannot move a tensor that is exactly 0
        w = nn.Parameter(0.1 * torch.randn(8, 6, generator=gen))
        b = nn.Parameter(torch.zeros(6))

        def loss_fn():
            return 0.5 * ((a @ w + b - target) ** 2).sum()

        rule = seeds.load(name)
        groups = [{"params": [w], "role": "hidden_matrix"}, {"params": [b], "role": "vector"}]
        return _descend(RuleOptimizer(groups, rule, lr=rule.lr * mult, total_steps=200), loss_fn, 200)

    ok, results = _first_passing(run, lambda b, a: a < 0.9 * b)
    assert ok, f"{name}: quadratic (lr mult, before, after): {results}"


@pytest.mark.parametrize("name", ALL)
def test_lowers_rosenbrock(name):
    def run(mult):
        xy = nn.Parameter(torch.tensor([-1.5, 2.0]))

        def f():
            return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2

        rule = seeds.load(name)
        # the valley's curvature (~1e3) makes lr > 2e-3 unstable for momentum SGD
        return _descend(RuleOptimizer([xy], rule, lr=min(rule.lr, 1e-3) * mult, total_steps=300), f, 300)

    ok, results = _first_passing(run, lambda b, a: a < b)
    assert ok, f"{name}: rosenbrock (lr mult, before, after): {results}"


@pytest.mark.parametrize("name", ALL)
def test_state_dict_mid_training_continues_bit_identically(name):
    model, opt, _ = _run_mlp(name, 6, seed=1)
    start, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    # continue the same objects
    x, y = _digits()
    gen = torch.Generator().manual_seed(7)
    batches = [torch.randint(0, len(x), (64,), generator=gen) for _ in range(4)]

    def cont(m, o):
        for idx in batches:
            o.zero_grad()
            nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
            o.step()
        return [p.detach().clone() for p in m.parameters()]

    expected = cont(model, opt)
    torch.manual_seed(0)
    model2 = _MLP()
    model2.load_state_dict(start)
    opt2 = RuleOptimizer(param_groups(model2), seeds.load(name), total_steps=6)
    opt2.load_state_dict(state)
    got = cont(model2, opt2)
    for e, g in zip(expected, got):
        assert torch.equal(e, g), f"{name}: continuation differs after load_state_dict"
