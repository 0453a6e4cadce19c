"""Exported optimizers on bfloat16 parameters (CPU here; CUDA too where a GPU is present): parameters
and state keep the model's dtype and device, and a small model still learns."""

import importlib.util
import sys

import pytest
import torch
from torch import nn

from optforge import seeds
from optforge.export import render_module
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.program import render

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
RULES = {name: seeds.source(name) for name in ("adamw", "lion", "muon") if name in seeds.names()}
RULES["symbolic_adamw"] = render(warmstarts.program("adamw"))


def _load(tmp_path, name, source):
    path = tmp_path / f"bf16_{name}.py"
    path.write_text(render_module(source, "Exported"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(RULES))
def test_exported_optimizer_trains_a_bfloat16_model(tmp_path, name, device):
    mod = _load(tmp_path, name, RULES[name])
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(device=device, dtype=torch.bfloat16)
    x = torch.randn(256, 16, generator=gen).to(device=device, dtype=torch.bfloat16)
    y = (x[:, :4].float().argmax(dim=1)).to(device)
    # lrs large enough that a step survives bfloat16 rounding (8 mantissa bits: a 3e-4 Lion step
    # vanishes on a weight of 0.1)
    lr = {"muon": 2e-2, "lion": 3e-3}.get(name, 3e-3)
    opt = mod.Exported(mod.param_groups(model), lr=lr, total_steps=150)

    def loss():
        return nn.functional.cross_entropy(model(x).float(), y)

    with torch.no_grad():
        first = float(loss())
    for _ in range(150):
        opt.zero_grad()
        loss().backward()
        opt.step()
    opt.eval()
    with torch.no_grad():
        last = float(loss())
    assert all(p.dtype == torch.bfloat16 and p.device.type == device and torch.isfinite(p).all() for p in model.parameters())
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.ndim > 0:
                assert v.device.type == device and v.dtype == torch.bfloat16, (name, v.dtype)
    assert last < 0.7 * first, (name, first, last)
