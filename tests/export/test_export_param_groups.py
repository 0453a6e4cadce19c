"""What an exported optimizer shows in `param_groups`, `defaults` and `state_dict()`: the rule's public
hyperparameters only (lr, weight_decay, role, and betas/momentum where the rule has those constants),
no internals; old checkpoints load (the round trip of a symbolic export is in test_export.py)."""

import copy
import re
import importlib.util
import sys

import pytest
import torch
from torch import nn

from optforge import seeds
from optforge.export import render_module
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.program import render

BASE = {"lr", "role", "weight_decay"}


def _export(source, tmp_path):
    tag = "exp_" + re.sub(r"\W", "_", tmp_path.name)  # one module name per test
    path = tmp_path / f"{tag}.py"
    path.write_text(render_module(source, "Exported"))
    spec = importlib.util.spec_from_file_location(tag, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[tag] = mod
    spec.loader.exec_module(mod)
    return mod


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _train(model, opt, batches):
    for x in batches:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def _batches(n):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(4, 6, generator=gen) for _ in range(n)]


@pytest.mark.parametrize("source,shown", [
    (render(warmstarts.program("adamw")), set()),  # a symbolic program: constants LR only
    (seeds.source("adamw"), {"betas"}),
    (seeds.source("sgd"), {"momentum"}),
])
def test_groups_and_defaults_show_only_public_hyperparameters(source, shown, tmp_path):
    mod = _export(source, tmp_path)
    model = _model()
    opt = mod.Exported(mod.param_groups(model))
    assert set(opt.defaults) == BASE | shown
    for group in opt.param_groups:
        # eval_mode: the train/eval switch a checkpoint must carry, as schedule-free optimizers keep it
        assert set(group) == BASE | shown | {"params", "eval_mode"}, sorted(group)
    _train(model, opt, _batches(2))
    for group in opt.state_dict()["param_groups"]:
        assert not [k for k in group if k.startswith("_")] and ("momentum" in group) == ("momentum" in shown)


def test_a_checkpoint_written_with_the_old_internal_keys_loads_without_them(tmp_path):
    mod = _export(render(warmstarts.program("adamw")), tmp_path)
    model = _model()
    opt = mod.Exported(mod.param_groups(model))
    _train(model, opt, _batches(2))
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:  # what optimizers exported before this fix saved
        group.update(momentum=0.0, _mirror={"momentum": 0.0})
    opt.load_state_dict(old)
    assert all("momentum" not in g and "_mirror" not in g for g in opt.param_groups)
    _train(model, opt, _batches(1))


def test_a_group_momentum_for_a_rule_without_one_is_refused(tmp_path):
    mod = _export(render(warmstarts.program("adamw")), tmp_path)
    with pytest.raises(ValueError, match="has no momentum constant"):
        mod.Exported([{"params": [nn.Parameter(torch.ones(3))], "momentum": 0.9}])


def test_momentum_cycling_schedulers_refuse_a_rule_without_momentum_until_told_not_to_cycle(tmp_path):
    mod = _export(render(warmstarts.program("adamw")), tmp_path)
    w = nn.Parameter(torch.randn(3))
    opt = mod.Exported([w])
    with pytest.raises(ValueError, match="cycle_momentum"):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10, cycle_momentum=False)
    for _ in range(3):
        w.grad = torch.ones(3)
        opt.step()
        sched.step()
