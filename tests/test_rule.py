"""The rule contract: static check, loading, hyperparameters, RuleOptimizer behaviour, roles."""

import copy

import pytest
import torch
from torch import nn

from optforge import seeds
from optforge.rule import (
    RuleError,
    RuleOptimizer,
    check_rule,
    infer_roles,
    load_rule,
    param_groups,
)

GOOD = """
import torch
LR = 0.1
SCALE = 1.0

def init(p, ctx):
    return {"n": 0}

def update(p, g, state, ctx):
    state["n"] += 1
    return -ctx.lr * SCALE * g
"""


def test_good_rule_has_no_problems():
    assert check_rule(GOOD) == []
    rule = load_rule(GOOD, name="good")
    assert rule.hparams == {"LR": 0.1, "SCALE": 1.0}
    assert rule.eval_point is None


@pytest.mark.parametrize(
    "source, expected",
    [
        ("LR = 1\ndef init(p, ctx):\n  return {}\ndef update(p, g, state, ctx)\n  return g\n", "line 4: syntax error"),
        ("def init(p, ctx):\n  return {}\ndef update(p, g, state, ctx):\n  return g\n", "missing module constant 'LR'"),
        ("LR = 1\ndef update(p, g, state, ctx):\n  return g\n", "missing function 'init'"),
        ("LR = 1\ndef init(p, ctx):\n  return {}\n", "missing function 'update'"),
        ("LR = 1\ndef init(p):\n  return {}\ndef update(p, g, state, ctx):\n  return g\n", "line 2: 'init' must take exactly (p, ctx)"),
        ("import os\nLR = 1\ndef init(p, ctx):\n  return {}\ndef update(p, g, state, ctx):\n  return g\n", "line 1: import of 'os' is not allowed"),
        ("from subprocess import run\nLR = 1\ndef init(p, ctx):\n  return {}\ndef update(p, g, state, ctx):\n  return g\n", "line 1: import from 'subprocess' is not allowed"),
        ("LR = 1\ndef init(p, ctx):\n  return {}\ndef update(p, g, state, ctx):\n  return eval('g')\n", "line 5: 'eval' is not allowed"),
        ("LR = 1\ndef init(p, ctx):\n  return {}\ndef update(p, g, state, ctx):\n  open('x')\n  return g\n", "line 5: 'open' is not allowed"),
    ],
)
def test_check_rule_reports_problem_with_line(source, expected):
    problems = [str(p) for p in check_rule(source)]
    assert any(expected in p for p in problems), problems
    with pytest.raises(RuleError, match="invalid"):
        load_rule(source)


def test_load_error_names_line():
    src = GOOD + "\nX = 1 / 0\n"
    with pytest.raises(RuleError, match=r"line \d+: ZeroDivisionError"):
        load_rule(src)


def test_with_hparams_edits_source_and_checks_values():
    rule = load_rule(GOOD, name="good")
    r2 = rule.with_hparams(SCALE=2.5)
    assert r2.hparams["SCALE"] == 2.5 and "SCALE = 2.5" in r2.source
    assert rule.hparams["SCALE"] == 1.0
    with pytest.raises(RuleError, match="has no hyperparameter 'BETA'; known: LR, SCALE"):
        rule.with_hparams(BETA=0.9)
    with pytest.raises(RuleError, match="must be a number"):
        rule.with_hparams(SCALE="big")
    with pytest.raises(RuleError, match=r"LR=-1.0 must be > 0"):
        rule.with_hparams(LR=-1.0)
    adamw = seeds.load("adamw")
    with pytest.raises(RuleError, match=r"BETA1=1.5 must be in \[0, 1\)"):
        adamw.with_hparams(BETA1=1.5)
    with pytest.raises(RuleError, match=r"EPS=nan must be a finite number"):
        adamw.with_hparams(EPS=float("nan"))
    with pytest.raises(RuleError, match=r"WD=-0.1 must be >= 0"):
        adamw.with_hparams(WD=-0.1)


def test_bad_hyperparameter_in_source_is_rejected_on_load():
    with pytest.raises(RuleError, match=r"BETA2=1.2 must be in \[0, 1\)"):
        load_rule(GOOD.replace("SCALE = 1.0", "SCALE = 1.0\nBETA2 = 1.2"))


@pytest.mark.parametrize(
    "ret, expected",
    [
        ("g.sum()", r"shape \(3, 2\).*got a tensor of shape \(\)"),
        ("g.double()", "torch.float64"),
        ("1.0", "got a float"),
        ("None", "got a NoneType"),
    ],
)
def test_bad_delta_names_param_and_rule(ret, expected):
    src = GOOD.replace("return -ctx.lr * SCALE * g", f"return {ret}")
    rule = load_rule(src, name="broken")
    p = nn.Parameter(torch.ones(3, 2))
    p.grad = torch.ones(3, 2)
    opt = RuleOptimizer([p], rule)
    with pytest.raises(RuleError, match=r"rule 'broken'.*param 0 of group 0") as e:
        opt.step()
    assert e.match(expected)


def test_lr_default_groups_schedulers_and_closure():
    rule = load_rule(GOOD)
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2, 2))
    opt = RuleOptimizer([{"params": [a]}, {"params": [b], "lr": 0.5, "role": "hidden_matrix"}], rule)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    def closure():
        opt.zero_grad()
        loss = (a.sum() + b.sum())
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 6.0
    assert torch.allclose(a.detach(), torch.full((2,), 0.9))
    assert torch.allclose(b.detach(), torch.full((2, 2), 0.5))
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="Invalid role"):
        RuleOptimizer([{"params": [a], "role": "bogus"}], rule)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        RuleOptimizer([a], rule, lr=float("nan"))


def test_ctx_fields():
    seen = []
    src = GOOD.replace("SCALE = 1.0", "SCALE = 1.0\nRECORD = []").replace("state[\"n\"] += 1", "state[\"n\"] += 1\n    RECORD.append((ctx.lr, ctx.t, ctx.T, ctx.role, ctx.shape, ctx.grad_norm))")
    rule = load_rule(src)
    rule.module.RECORD = seen
    a = nn.Parameter(torch.zeros(3))
    b = nn.Parameter(torch.zeros(2, 2))
    opt = RuleOptimizer([{"params": [a]}, {"params": [b], "role": "head"}], rule, total_steps=10)
    a.grad = torch.tensor([3.0, 0.0, 0.0])
    b.grad = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    opt.step()
    opt.step()
    assert seen[0] == (0.1, 1, 10, "vector", (3,), pytest.approx(5.0))
    assert seen[1] == (0.1, 1, 10, "head", (2, 2), pytest.approx(5.0))
    assert seen[2][1] == 2
    ctx_fields = {f for f in type(opt._ctx(opt.param_groups[0], a, None, 1)).__dataclass_fields__}
    assert not any("task" in f or "data" in f for f in ctx_fields)


def _train(opt, model, steps, gen):
    for _ in range(steps):
        x = torch.randn(8, 4, generator=gen)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("name", ["adamw"])
def test_state_dict_round_trip_is_bit_identical(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = RuleOptimizer(param_groups(model), seeds.load(name), total_steps=20)
    _train(opt, model, 5, torch.Generator().manual_seed(1))
    snap_model, snap_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _train(opt, model, 5, torch.Generator().manual_seed(2))
    expected = [p.detach().clone() for p in model.parameters()]

    model2 = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model2.load_state_dict(snap_model)
    opt2 = RuleOptimizer(param_groups(model2), seeds.load(name), total_steps=20)
    opt2.load_state_dict(snap_opt)
    _train(opt2, model2, 5, torch.Generator().manual_seed(2))
    for p, q in zip(expected, model2.parameters()):
        assert torch.equal(p, q.detach())


EVAL_RULE = """
import torch
LR = 1.0
def init(p, ctx):
    return {"avg": p.detach().clone(), "k": 0}
def update(p, g, state, ctx):
    state["k"] += 1
    new = p - ctx.lr * g
    state["avg"].add_((new - state["avg"]) / (state["k"] + 1))
    return new - p
def eval_point(p, state, ctx):
    return state["avg"]
"""


def test_train_eval_swap_eval_point():
    rule = load_rule(EVAL_RULE)
    p = nn.Parameter(torch.zeros(2))
    opt = RuleOptimizer([p], rule)
    for _ in range(3):
        p.grad = torch.ones(2)
        opt.step()
    assert torch.equal(p.detach(), torch.full((2,), -3.0))
    opt.eval()
    assert torch.allclose(p.detach(), torch.full((2,), -1.5))  # mean of 0, -1, -2, -3
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    opt.train()
    assert torch.equal(p.detach(), torch.full((2,), -3.0))
    # a state_dict taken in eval mode still restores the training point
    q = nn.Parameter(torch.full((2,), -1.5))
    opt2 = RuleOptimizer([q], rule)
    opt2.load_state_dict(sd)
    opt2.train()
    assert torch.equal(q.detach(), torch.full((2,), -3.0))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 4, 3)
        self.fc = nn.Linear(4, 4)
        self.norm_gain = nn.Parameter(torch.ones(4))
        self.temp = nn.Parameter(torch.tensor(1.0))
        self.out = nn.Linear(4, 10)


def test_infer_roles_and_param_groups():
    roles = infer_roles(_Net())
    assert roles == {
        "emb.weight": "embedding",
        "conv.weight": "conv",
        "conv.bias": "vector",
        "fc.weight": "hidden_matrix",
        "fc.bias": "vector",
        "norm_gain": "vector",
        "temp": "scalar",
        "out.weight": "head",
        "out.bias": "vector",
    }
    groups = param_groups(_Net(), lr=0.3)
    assert [g["role"] for g in groups] == ["hidden_matrix", "conv", "embedding", "head", "vector", "scalar"]
    assert all(g["lr"] == 0.3 for g in groups)
    named_head = nn.Sequential()
    named_head.add_module("head", nn.Linear(3, 3))
    named_head.add_module("proj", nn.Linear(3, 3))
    assert infer_roles(named_head)["head.weight"] == "head"
    assert infer_roles(named_head)["proj.weight"] == "hidden_matrix"


def test_decoupled_weight_decay_outside_the_rule_matches_adamw():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    b = nn.Parameter(a.detach().clone())
    adam = seeds.load("adamw").with_hparams(WD=0.0)
    ours = RuleOptimizer([a], adam, lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW([b], lr=1e-2, weight_decay=0.1)
    for _ in range(20):
        g = torch.randn(5, 3, dtype=torch.float64)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(a, b, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="Invalid weight_decay"):
        RuleOptimizer([a], adam, weight_decay=-1.0)


def test_derived_constants_are_not_hyperparameters_and_follow_their_inputs():
    src = GOOD.replace("SCALE = 1.0", "BASE = 2.0\nSCALE = BASE * 0.5")
    rule = load_rule(src)
    assert rule.hparams == {"LR": 0.1, "BASE": 2.0}
    assert rule.with_hparams(BASE=4.0).module.SCALE == 2.0
