"""Exported modules: standalone, bit-identical to RuleOptimizer, checked hyperparameters, state_dict."""

import copy
import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from optforge import seeds
from optforge.export import ExportInfo, render_module
from optforge.rule import RuleError, RuleOptimizer, param_groups

EXPORTED = [n for n in ("adamw", "lion", "muon", "schedule_free_adamw", "soap", "adafactor") if n in seeds.names()]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


TRAIN = """
def train(make_opt, steps=12):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = make_opt(model)
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.eval()
    return [p.detach().clone() for p in model.parameters()]
"""
_ns: dict = {}
exec("import torch\nfrom torch import nn\n" + TRAIN, _ns)  # the same text runs in the fresh interpreter
train = _ns["train"]


def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_exported_modules_train_bit_identically_without_optforge(tmp_path):
    for name in EXPORTED:
        (tmp_path / f"exp_{name}.py").write_text(render_module(seeds.source(name), "Exported"))
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, json, importlib.util\n"
        "sys.modules['optforge'] = None  # optforge must not be importable\n"
        "import torch\nfrom torch import nn\n"
        + TRAIN
        + textwrap.dedent(
            f"""
            out = {{}}
            for name in {EXPORTED!r}:
                spec = importlib.util.spec_from_file_location('exp_' + name, r'{tmp_path}/exp_' + name + '.py')
                mod = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = mod
                spec.loader.exec_module(mod)
                params = train(lambda m: mod.Exported(mod.param_groups(m), total_steps=12))
                out[name] = [p.double().flatten().tolist() for p in params]
            print(json.dumps(out))
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    torch.set_num_threads(1)
    for name in EXPORTED:
        want = train(lambda m: RuleOptimizer(param_groups(m), seeds.load(name), total_steps=12))
        for w, g in zip(want, got[name]):
            assert w.double().flatten().tolist() == g, f"{name}: exported optimizer differs from RuleOptimizer"


def test_constructor_rejects_bad_hyperparameters_naming_them(tmp_path):
    path = tmp_path / "my_adamw.py"
    path.write_text(render_module(seeds.source("adamw"), "MyAdamW"))
    mod = _import_file(path, "my_adamw")
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"beta1=1.5 must be in \[0, 1\).*eps=-1 must be >= 0"):
        mod.MyAdamW(params, beta1=1.5, eps=-1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        mod.MyAdamW(params, lr=-1.0)
    with pytest.raises(ValueError, match="Invalid weight_decay"):
        mod.MyAdamW(params, weight_decay=-0.5)
    opt = mod.MyAdamW(params, beta1=0.5)
    assert opt.hparams["BETA1"] == 0.5 and mod.__all__ == ["MyAdamW", "param_groups", "infer_roles"]


def _symbolic_adamw() -> str:
    from optforge.search.symbolic import warmstarts
    from optforge.search.symbolic.program import render

    return render(warmstarts.program("adamw"))


@pytest.mark.parametrize("kind", ["seed", "symbolic"])
def test_exported_state_dict_round_trips(kind, tmp_path):
    name = "lion" if "lion" in seeds.names() else "adamw"
    source = seeds.source(name) if kind == "seed" else _symbolic_adamw()  # a symbolic program: constants LR only
    path = tmp_path / f"my_{kind}.py"
    path.write_text(render_module(source, "MyOpt"))
    mod = _import_file(path, f"my_{kind}")
    model = _model()
    opt = mod.MyOpt(mod.param_groups(model))
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 6, generator=gen) for _ in range(6)]

    def run(m, o, bs):
        for x in bs:
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()

    run(model, opt, batches[:3])
    sd_model, sd_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    run(model, opt, batches[3:])
    model2 = _model()
    model2.load_state_dict(sd_model)
    opt2 = mod.MyOpt(mod.param_groups(model2))
    opt2.load_state_dict(sd_opt)
    assert [set(g) for g in opt2.param_groups] == [set(g) for g in opt.param_groups]
    run(model2, opt2, batches[3:])
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_docstring_carries_provenance_and_usage():
    info = ExportInfo(
        provenance={"run": "runs/x", "candidate": "abc123", "parents": "p1", "strategy": "symbolic", "suite": "train@1"},
        scores={"train": {"fitness": 0.42, "fitness_hw": 0.071, "tasks": {"mlp_digits": (0.5, 0.14)}},
                "heldout": {"fitness": 0.1}},
        lr_by_family={"mlp": 3e-3},
        weight_decay=0.1,
        step_time_ratio=1.1,
        state_bytes_per_param=4.0,
    )
    text = render_module(seeds.source("adamw"), "Found", info)
    info.from_run = True
    text = render_module(seeds.source("adamw"), "Found", info)
    for needle in ("candidate: abc123", "strategy: symbolic", "train: +0.420 ± 0.071", "mlp_digits +0.50 ± 0.14",
                   "heldout: +0.100", "95 % interval", "mlp 0.003",
                   "Scored with the lr schedule: linear warmup", "applies no schedule itself",
                   "Outer decoupled weight decay it was evaluated with: weight_decay=0.1 (not tuned", "1.10x", "4.0 bytes",
                   # AdamW's own WD and the outer weight_decay add up: the text says how to get torch's
                   "This rule decays the weights itself: its wd= (default 0.01)", "pass wd=x and"):
        assert needle in text, needle
    assert "import optforge" not in text and "from optforge" not in text
    assert "weight_decay: float = 0.1" in text
    tuned = render_module(seeds.source("adamw"), "Found", ExportInfo(weight_decay=0.01, wd_by_task={"nqm": 0.01, "mlp_deep": 0.1}))
    assert "default 0.01, the value tuned" in tuned and "(mlp_deep 0.1, nqm 0.01)" in tuned
    assert "weight_decay: float = 0.01" in tuned


def test_export_refuses_invalid_rule_and_bad_name():
    with pytest.raises(RuleError, match="cannot export this rule: it fails the static check"):
        render_module("LR = 1\n", "X")
    with pytest.raises(ValueError, match="not a usable class name"):
        render_module(seeds.source("adamw"), "my-opt")


def test_a_plain_rule_file_exports_with_a_bom_and_claims_no_run(tmp_path):
    """`optforge export some_rule.py`: no run, so the docstring says nothing of a schedule the rule was
    evaluated with or of weight decay not tuned "in this run"; and no text suggests that total_steps
    makes the optimizer schedule its lr (it does not: it tells the rule the run's length, ctx.T)."""
    rule = tmp_path / "my_rule.py"
    rule.write_bytes(b"\xef\xbb\xbf" + seeds.source("adamw").replace("\n", "\r\n").encode("utf-8"))
    out = tmp_path / "exported.py"
    proc = subprocess.run([sys.executable, "-m", "optforge", "export", str(rule), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    doc = text.split('"""', 2)[1]
    for claim in ("evaluated with", "Evaluated with", "in this run", "(pass total_steps)", "Scored with"):
        assert claim not in doc, claim
    assert "The optimizer applies no lr schedule itself; use a torch.optim.lr_scheduler" in doc
    assert "total_steps: the length of your run in steps, which the rule reads as ctx.T" in doc
    assert "it changes no lr" in doc
    assert "\ufeff" not in text and "\r" not in text
    mod = _import_file(out, "exported_plain_rule")
    model = torch.nn.Linear(3, 2)
    opt = mod.MyRule(mod.param_groups(model), total_steps=5)
    lr_before = [g["lr"] for g in opt.param_groups]
    model(torch.randn(4, 3)).square().mean().backward()
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == lr_before  # total_steps set no schedule


def test_a_run_exported_by_a_relative_path_names_its_run_by_an_absolute_one(tmp_path, monkeypatch):
    """`optforge export runs/x ...` from the run's parent wrote `run: runs/x` into the file's docstring,
    which means nothing where the file is read later; it names the run absolutely now."""
    from optforge.config import config_from_dict
    from optforge.export import export_info_from_run
    from optforge.store import Store, versions
    from optforge.types import Candidate

    monkeypatch.chdir(tmp_path)
    st = Store("runs/x")
    st.set_meta(config=config_from_dict({"strategy": {"name": "seeds"}, "suite": "smoke"}).to_dict(), versions=versions())
    st.add_proposals([Candidate.new("LR = 1\n", id="c0")], None)
    st.close()
    with Store.open("runs/x") as store:
        info = export_info_from_run(store, "c0")
    assert info.provenance["run"] == str(tmp_path / "runs" / "x")


def test_exported_adamw_takes_torchs_betas_and_its_decay_is_wd(tmp_path):
    """Code written for torch.optim.AdamW passes betas=(b1, b2); the export took beta1=/beta2= only (a
    TypeError). And its weight decay is the rule's own wd=: torch's weight_decay=x is wd=x here, while
    weight_decay= would add a second decay on top, which the docstring now says."""
    path = tmp_path / "exp_adamw_betas.py"
    path.write_text(render_module(seeds.source("adamw"), "AdamW"))
    mod = _import_file(path, "exp_adamw_betas")
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(5, 3))
    theirs = torch.nn.Parameter(ours.detach().clone())
    opt = mod.AdamW([ours], lr=1e-2, betas=(0.8, 0.95), wd=0.1)
    ref = torch.optim.AdamW([theirs], lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(50):
        g = torch.randn(5, 3)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert opt.param_groups[0]["betas"] == (0.8, 0.95)
    with pytest.raises(ValueError, match="beta1=1.5"):
        mod.AdamW([ours], betas=(1.5, 0.9))
    assert "pass wd=x and" in path.read_text()
