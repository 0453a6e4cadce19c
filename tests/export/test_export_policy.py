"""`optforge export` holds a rule to the same static check as the sandbox, and says what it refused;
the exported file of every seed still loads and steps; task detection flags reach the docstring."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from torch import nn

from optforge import seeds
from optforge.export import render_module
from optforge.rule import RuleError

CONTRACT = "LR = 1e-3\n\ndef init(p, ctx):\n    return {}\n\n"
HOSTILE = {
    # what the canary did: read the environment through torch's own `os`, on the first step()
    "env_canary": "import torch\n" + CONTRACT + "def update(p, g, state, ctx):\n    print(torch.os.environ.get('CANARY'))\n    return -ctx.lr * g\n",
    "match_escape": CONTRACT + "def update(p, g, state, ctx):\n    match g:\n        case object(__class__=c):\n            return c\n    return -ctx.lr * g\n",
    "monkeypatch": "import torch\n" + CONTRACT + "def update(p, g, state, ctx):\n    T = torch.Tensor\n    T.add_ = None\n    return -ctx.lr * g\n",
}
HOSTILE_LINE = {"env_canary": 8, "match_escape": 7, "monkeypatch": 9}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_render_refuses_what_the_policy_refuses(name):
    with pytest.raises(RuleError, match=f"static check.*line {HOSTILE_LINE[name]}:"):
        render_module(HOSTILE[name], "Hostile")


def test_cli_export_of_a_hostile_rule_is_refused_and_says_why(tmp_path):
    rule = tmp_path / "hostile.py"
    rule.write_text(HOSTILE["env_canary"])
    out = tmp_path / "out.py"
    proc = subprocess.run(
        [sys.executable, "-m", "optforge", "export", str(rule), "-o", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "line 8" in proc.stderr and "torch.os" in proc.stderr
    assert not out.exists()


def _load(path, name, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_exports_and_steps(name, tmp_path, monkeypatch):
    path = tmp_path / f"exp_{name}.py"
    text = render_module(seeds.source(name), "Exported")
    assert "Task detection flagged" not in text
    path.write_text(text)
    mod = _load(path, f"exp_{name}", monkeypatch)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    opt = mod.Exported(mod.param_groups(model), total_steps=3)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 5)).square().mean().backward()
        opt.step()
    opt.eval()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), f"{name} did not move any parameter"


def test_task_detection_flags_reach_the_docstring():
    src = "import torch\n" + CONTRACT + "def update(p, g, state, ctx):\n    if ctx.T == 5:\n        return torch.zeros_like(g)\n    return -ctx.lr * g\n"
    text = render_module(src, "Detecting")
    doc = text.split('"""', 2)[1]
    assert "Task detection flagged" in doc and "line 8: compares ctx.T with 5" in doc
