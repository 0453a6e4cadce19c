"""RuleOptimizer and exported optimizers keep torch.optim's contract (issue 16 item 1).

Groups added at any time, per-tensor step counts, empty tensors, state dtype on load, constructor
arguments, a tensor lr, momentum-cycling schedulers, and errors that name the parameter. The
numbers against torch.optim twins are in tests/export/test_parity.py.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from optforge import seeds
from optforge.export import render_module
from optforge.rule import RuleOptimizer, load_rule, param_groups

MOMENTUM_RULE = '''
import torch

LR: float = 1e-2
BETA: float = 0.9


def init(p, ctx):
    return {"buf": torch.zeros_like(p)}


def update(p, g, state, ctx):
    buf = state["buf"]
    buf.mul_(BETA).add_(g)
    return -ctx.lr * buf
'''

VECTORS_ONLY = '''
import torch

LR = 0.1


def init(p, ctx):
    if len(ctx.shape) != 1:
        raise ValueError("this rule takes 1-D tensors only")
    return {}


def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def _module(source: str, tag: str):
    text = render_module(source, class_name="Exported")
    mod = type(sys)(f"_contract_{tag}")
    sys.modules[mod.__name__] = mod
    exec(compile(text, f"<exported {tag}>", "exec"), mod.__dict__)
    return mod


class WithEmptyLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(4, 0, bias=False)  # registered first: role hidden_matrix, shape (0, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x))).pow(2).mean() + self.unused(x).sum() * 0


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_skips_an_empty_parameter(name):
    torch.manual_seed(0)
    m = WithEmptyLayer()
    before = m.body.weight.detach().clone()
    opt = RuleOptimizer(param_groups(m), seeds.load(name))
    for _ in range(2):
        opt.zero_grad()
        m(torch.randn(8, 4)).backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert (m.body.weight - before).abs().max() > 0
    assert not opt.state[m.unused.weight]


def test_added_group_gets_bookkeeping_and_its_role_checked():
    rule = seeds.load("schedule_free_adamw")
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    opt = RuleOptimizer([a], rule)
    with pytest.raises(ValueError, match="Invalid role 'matrix'"):
        opt.add_param_group({"params": [b], "role": "matrix"})
    opt.add_param_group({"params": [b], "role": "vector", "lr": 0.01})
    for _ in range(2):
        opt.zero_grad()
        (a.pow(2).sum() + b.pow(2).sum()).backward()
        opt.step()
    opt.eval()
    c = nn.Parameter(torch.randn(2))
    opt.add_param_group({"params": [c]})  # added in eval mode: the group is in eval mode too
    assert opt.param_groups[-1]["eval_mode"]
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    opt.train()
    assert all(not g["eval_mode"] for g in opt.param_groups)


def test_step_count_is_per_tensor():
    rule = seeds.load("adam")
    a, b = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))
    opt = RuleOptimizer([a, b], rule)
    for step in range(5):
        opt.zero_grad()
        loss = a.pow(2).sum() + (b.pow(2).sum() if step >= 3 else 0)
        loss.backward()
        opt.step()
    assert opt.state[a]["_step"] == 5 and opt.state[b]["_step"] == 2


def test_checkpoint_without_per_tensor_counts_takes_the_group_step():
    rule = seeds.load("adam")
    a = nn.Parameter(torch.randn(4))
    opt = RuleOptimizer([a], rule)
    for _ in range(3):
        opt.zero_grad()
        a.pow(2).sum().backward()
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    for st in saved["state"].values():  # the format before per-tensor counts: one "step" per group
        del st["_step"]
    saved["param_groups"][0]["step"] = 3
    opt2 = RuleOptimizer([nn.Parameter(a.detach().clone())], rule)
    opt2.load_state_dict(saved)
    st = next(iter(opt2.state.values()))
    assert st["_step"] == 3 and torch.equal(st["m"], opt.state[a]["m"])
    assert "step" not in opt2.param_groups[0]


@pytest.mark.parametrize("first,then", [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("name", ["adam", "muon", "adafactor", "soap", "schedule_free_adamw", "came"])
def test_state_follows_the_parameter_dtype_on_load(name, first, then):
    rule = seeds.load(name)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6, bias=False), nn.Linear(6, 1)).to(first)
    x = torch.randn(8, 6)
    opt = RuleOptimizer(param_groups(model), rule)
    model(x.to(first)).pow(2).mean().backward()
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    model = model.to(then)
    opt2 = RuleOptimizer(param_groups(model), rule)
    opt2.load_state_dict(saved)
    opt2.zero_grad()
    model(x.to(then)).pow(2).mean().backward()
    opt2.step()
    for group in opt2.param_groups:
        for p in group["params"]:
            fresh = rule.init(p, opt2._ctx(group, p, None, 1))
            for key, v in fresh.items():
                if torch.is_tensor(v):
                    assert opt2.state[p][key].dtype == v.dtype, (key, opt2.state[p][key].dtype, v.dtype)


def test_rule_that_keeps_fp32_state_keeps_it_on_load():
    src = MOMENTUM_RULE.replace("torch.zeros_like(p)", "torch.zeros_like(p, dtype=torch.float32)").replace(
        "return -ctx.lr * buf", "return (-ctx.lr * buf).to(p.dtype)")
    rule = load_rule(src)
    p = nn.Parameter(torch.randn(4, dtype=torch.float64))
    opt = RuleOptimizer([p], rule)
    p.grad = torch.ones(4, dtype=torch.float64)
    opt.step()
    q = nn.Parameter(p.detach().to(torch.bfloat16))
    opt2 = RuleOptimizer([q], rule)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[q]["buf"].dtype == torch.float32


def test_annotated_constant_is_an_exported_argument_that_changes_the_rule():
    cls = _module(MOMENTUM_RULE, "annotated").Exported
    rule = load_rule(MOMENTUM_RULE)

    def run(make):
        w = nn.Parameter(torch.zeros(1))
        opt = make([w])
        for g in (1.0, 0.0, 0.0):
            w.grad = torch.tensor([g])
            opt.step()
        return w.item()

    for beta in (0.0, 0.5, 0.9):
        want = run(lambda ps: RuleOptimizer(ps, rule.with_hparams(BETA=beta), lr=1.0))
        assert run(lambda ps: cls(ps, lr=1.0, beta=beta)) == want
    assert run(lambda ps: cls(ps, lr=1.0, beta=0.0)) != run(lambda ps: cls(ps, lr=1.0, beta=0.9))


def test_tensor_lr_trains_like_a_float_lr():
    cls = _module(seeds.source("adam"), "adam").Exported
    rule = seeds.load("adam")
    outs = []
    for make in (lambda ps: RuleOptimizer(ps, rule, lr=0.01), lambda ps: RuleOptimizer(ps, rule, lr=torch.tensor(0.01)),
                 lambda ps: cls(ps, lr=torch.tensor(0.01))):
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(3))
        opt = make([w])
        for _ in range(3):
            opt.zero_grad()
            w.pow(2).sum().backward()
            opt.step()
        outs.append(w.detach().clone())
    assert torch.equal(outs[0], outs[1]) and torch.allclose(outs[0], outs[2], rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="one element"):
        RuleOptimizer([nn.Parameter(torch.ones(2))], rule, lr=torch.ones(2))


@pytest.mark.parametrize("name,key", [("adam", "betas"), ("sgd", "momentum"), ("lion", "betas")])
def test_momentum_cycling_schedulers_construct_and_step_refuses_a_changed_momentum(name, key):
    rule = seeds.load(name)
    cls = _module(seeds.source(name), name).Exported
    schedulers = (lambda opt, **kw: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10, **kw),
                  lambda opt, **kw: torch.optim.lr_scheduler.CyclicLR(opt, base_lr=1e-3, max_lr=1e-2, **kw))
    for make in (lambda ps: RuleOptimizer(ps, rule), lambda ps: cls(ps)):
        for schedule in schedulers:
            w = nn.Parameter(torch.randn(3))
            opt = make([w])
            assert key in opt.param_groups[0] and key in opt.defaults
            sched = schedule(opt)  # constructs: the groups show betas/momentum
            with pytest.raises(ValueError, match="cycle_momentum=False"):
                for _ in range(3):  # the momentum moves at construction or at the first scheduler step
                    w.grad = torch.ones(3)
                    opt.step()
                    sched.step()
            opt = make([w])
            sched = schedule(opt, cycle_momentum=False)
            for _ in range(3):
                w.grad = torch.ones(3)
                opt.step()
                sched.step()


def test_a_group_that_sets_its_own_betas_is_refused():
    w = nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="betas"):
        RuleOptimizer([{"params": [w], "betas": (0.5, 0.9)}], seeds.load("adam"))


def test_a_rule_error_names_the_parameter():
    rule = load_rule(VECTORS_ONLY)
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2, 2))
    opt = RuleOptimizer([a, b], rule)
    a.grad, b.grad = torch.ones(3), torch.ones(2, 2)
    with pytest.raises(ValueError, match="1-D tensors only") as info:
        opt.step()
    assert any("param 1 of group 0 (shape (2, 2)" in note for note in info.value.__notes__)


def test_sparse_gradient_is_refused_naming_the_parameter():
    emb = nn.Embedding(5, 3, sparse=True)
    opt = RuleOptimizer(emb.parameters(), seeds.load("adam"))
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=r"param 0 of group 0, shape \(5, 3\)"):
        opt.step()
