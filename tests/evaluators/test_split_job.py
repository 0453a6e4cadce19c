"""The split training job: the rule runs in its own process, the trainer keeps the model.

Every seed gives bit-identical curves through the split path; a hostile rule finds no model, data
or loss in its process and nothing that an earlier run left behind; a bad delta is `bad_delta`,
a non-finite one `diverged`. The hostile rules read `torch.sys` / `torch.os` (the light
`check_rule` allows them; the sandbox's policy is switched off here so the process layout, not the
static check, is what holds).
"""

from __future__ import annotations

import pytest
import torch

from optforge import sandbox, seeds
from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.train import train_rule
from optforge.rule import load_rule

JOB = "optforge.evaluators.job:run_job"
SMOKE = {t.name: t for t in get_suite("smoke").tasks}

# walks every in-process route to the training loop: gc, every thread's frames and their callers,
# module globals and closures; raises naming what it found
HUNTER = '''
import torch
LR = 1e-3

def _found():
    sys = torch.sys
    gc = sys.modules["gc"]
    hits = []
    for obj in gc.get_objects():
        if isinstance(obj, torch.nn.Module):
            hits.append("module " + type(obj).__name__)
        elif isinstance(obj, torch.Tensor) and obj.requires_grad:
            hits.append("parameter")
        elif type(obj).__name__ in ("Problem", "RuleOptimizer", "RunTrace"):
            hits.append(type(obj).__name__)
        elif callable(obj) and type(obj).__name__ == "function":
            for cell in (obj.__closure__ or ()):
                try:
                    v = cell.cell_contents
                except ValueError:
                    continue
                if isinstance(v, torch.nn.Module) or type(v).__name__ == "Problem":
                    hits.append("closure of " + obj.__name__)
    for frame in sys._current_frames().values():
        while frame is not None:
            for key in ("problem", "model", "loss", "opt"):
                if key in frame.f_locals:
                    hits.append("frame local " + key)
            frame = frame.f_back
    for name, mod in list(sys.modules.items()):
        for v in list(getattr(mod, "__dict__", {}).values()):
            if isinstance(v, torch.nn.Module):
                hits.append("global of " + name)
    data = sys.modules.get("optforge.evaluators.tasks.datasets")
    if data is not None and any(f.cache_info().currsize for f in (data.digits, data.breast_cancer, data.diabetes)):
        hits.append("cached dataset")
    return hits

def init(p, ctx):
    hits = _found()
    if hits:
        raise RuntimeError("found " + ", ".join(sorted(set(hits))[:8]))
    return {}

def update(p, g, state, ctx):
    return -ctx.lr * g
'''

# run 1 leaves its weights everywhere it can write; a later run raises if it finds any of them
HOARDER = '''
import torch
LR = 1e-3
TAG = "optforge_hoard_marker"
FILES = True  # the in-process control switches files off: it must not write on the test machine
_DONE = []

def _places():
    os = torch.os
    dirs = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/run", os.getcwd(),
            os.environ.get("HOME", "/tmp"), os.environ.get("TMPDIR", "/tmp")}
    with torch.sys.modules["builtins"].open("/proc/self/mounts") as f:
        for line in f:
            dirs.add(line.split()[1])
    return sorted(d for d in dirs if os.path.isdir(d))

def _leftovers():
    os = torch.os
    found = [d for d in _places() if os.path.exists(os.path.join(d, TAG))]
    if hasattr(torch, TAG) or TAG in torch.sys.modules["builtins"].__dict__:
        found.append("module global")
    return found

def _hoard(p):
    os = torch.os
    _DONE.append(1)
    for d in _places() if FILES else ():
        try:
            with torch.sys.modules["builtins"].open(os.path.join(d, TAG), "w") as f:
                f.write(",".join(str(x) for x in p.reshape(-1).tolist()))
        except OSError:
            pass
    setattr(torch, TAG, p.clone())
    torch.sys.modules["builtins"].__dict__[TAG] = p.clone()

def init(p, ctx):
    if _DONE:
        return {}
    found = _leftovers()
    if found:
        raise RuntimeError("found an earlier run's weights in " + ", ".join(found[:8]))
    _hoard(p)
    return {}

def update(p, g, state, ctx):
    return -ctx.lr * g
'''

SCALAR_DELTA = "LR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return (g * 0).sum()\n"
NAN_DELTA = (
    "import torch\nLR = 1e-3\ndef init(p, ctx):\n    return {}\n"
    "def update(p, g, state, ctx):\n    return torch.full_like(g, float('nan')) if ctx.t == 3 else -ctx.lr * g\n"
)
BAD_EVAL_POINT = (
    "LR = 1e-3\ndef init(p, ctx):\n    return {'n': 0}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n"
    "def eval_point(p, state, ctx):\n    return p.double()\n"
)


def _same(a, b) -> bool:
    return (
        a.train_loss == b.train_loss
        and a.diverged_at == b.diverged_at
        and a.snapshots.keys() == b.snapshots.keys()
        and all(torch.equal(a.snapshots[s][n], b.snapshots[s][n]) for s in a.snapshots for n in a.snapshots[s])
    )


@pytest.mark.parametrize("name", seeds.names())
def test_every_seed_reproduces_todays_curves_bit_for_bit(host, name):
    src = seeds.source(name)
    local = load_rule(src, name=name)
    for task in SMOKE.values():
        kw = dict(lr=local.lr, seed=1, steps=8, eval_steps=[0, 4, 8], total_steps=20, weight_decay=0.01)
        today = train_rule(task, local, **kw)
        split = train_rule(task, RemoteRuleSource(host, src, name), **kw)
        assert _same(today, split), (name, task.name, today.train_loss, split.train_loss)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the hunter touches torch's deprecated aliases
def test_in_process_the_hunter_finds_the_training_loop():
    # the control: loaded in the trainer's own process, the same rule does find the model
    with pytest.raises(RuntimeError, match="found"):
        train_rule(SMOKE["smoke_mix"], load_rule(HUNTER, policy=None), lr=1e-3, seed=0, steps=2)


def _runs(task: str, n: int) -> list[dict]:
    return [
        {"task": task, "lr": 1e-3, "seed": s, "steps": 4, "horizon": 20, "eval_steps": [4], "weight_decay": 0.0}
        for s in range(n)
    ]


def _job(source: str, runs: list[dict]):
    limits = sandbox.Limits(timeout_s=120.0, static_check=False)
    res = sandbox.run(source, JOB, {"suite": "smoke", "runs": runs}, sandbox.RULE_POLICY, limits)
    assert res.ok, (res.reason, res.exception, res.stderr_tail)
    return res.value


def test_in_process_run_two_finds_run_ones_weights():
    # the control: two loads in one process share torch's module globals
    import builtins

    source = HOARDER.replace("FILES = True", "FILES = False")
    train_rule(SMOKE["smoke_mix"], load_rule(source, policy=None), lr=1e-3, seed=0, steps=2)
    try:
        with pytest.raises(RuntimeError, match="earlier run"):
            train_rule(SMOKE["smoke_mix"], load_rule(source, policy=None), lr=1e-3, seed=1, steps=2)
    finally:
        delattr(torch, "optforge_hoard_marker")
        builtins.__dict__.pop("optforge_hoard_marker", None)


def test_in_the_sandbox_run_two_finds_nothing_of_run_one():
    value = _job(HOARDER, _runs("smoke_mix", 3))
    assert "failure" not in value, value["failure"]
    assert [r["steps"] for r in value["runs"]] == [[4]] * 3


def test_in_the_sandbox_the_hunter_finds_nothing():
    # run 2's rule process starts after the trainer built run 1's model and cached its data
    value = _job(HUNTER, _runs("smoke_mix", 2))
    assert "failure" not in value, value["failure"]


LINGERER = '''
import os, socket, time

LR = 1e-3
ADDR = "\\0optforge-test-linger"
_served = []


def _heard():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(ADDR)
        return s.recv(200).decode()
    except OSError:
        return ""
    finally:
        s.close()


def init(p, ctx):
    heard = _heard()
    if heard:
        raise RuntimeError("an earlier run lives on and said: " + heard)
    return {}


def update(p, g, state, ctx):
    if not _served:  # from the first step on: never exit, serve the weights instead
        _served.append(1)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(ADDR)
        srv.listen(8)
        msg = "weights-sum=%.6f" % float(p.sum())

        def linger(code=0):
            while True:
                c, _ = srv.accept()
                c.send(msg.encode())
                c.close()
        os._exit = linger  # the rule process calls os._exit after STOP
    return -ctx.lr * g
'''


def test_a_rule_process_that_ignores_stop_does_not_outlive_its_run():
    """Checker off: a rule replaces its own exit and serves its weights on an abstract socket; the
    next run's rule process must find nobody there (the trusted side kills each rule process)."""
    value = _job(LINGERER, _runs("smoke_mix", 3))
    assert "failure" not in value, value["failure"]
    assert [r["steps"] for r in value["runs"]] == [[4]] * 3


def test_a_scalar_delta_is_bad_delta(host):
    with pytest.raises(RuleProcessError) as e:
        train_rule(SMOKE["smoke_quad"], RemoteRuleSource(host, SCALAR_DELTA), lr=1e-3, seed=0, steps=2)
    assert e.value.reason == "bad_delta"
    assert "got a tensor of shape ()" in e.value.record["message"]


def test_a_wrong_dtype_eval_point_is_bad_delta(host):
    with pytest.raises(RuleProcessError) as e:
        train_rule(SMOKE["smoke_quad"], RemoteRuleSource(host, BAD_EVAL_POINT), lr=1e-3, seed=0, steps=2)
    assert e.value.reason == "bad_delta"
    assert "eval_point must return" in e.value.record["message"]


def test_a_non_finite_delta_is_diverged_at_that_step(host):
    trace = train_rule(SMOKE["smoke_quad"], RemoteRuleSource(host, NAN_DELTA), lr=1e-3, seed=0, steps=6)
    assert trace.diverged_at == 3


def test_bad_delta_ends_the_evaluation_as_crashed():
    from optforge.evaluators import EvalRequest, evaluate

    res = evaluate(EvalRequest(SCALAR_DELTA, stage="smoke", suite="smoke"))
    assert res.status.value == "crashed"
    assert res.artifacts["sandbox"]["reason"] == "bad_delta"


def test_writing_p_in_place_kills_the_rule_process_with_a_hint(host):
    src = "LR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    p.mul_(0.5)\n    return -ctx.lr * g\n"
    with pytest.raises(RuleProcessError) as e:
        train_rule(SMOKE["smoke_quad"], RemoteRuleSource(host, src), lr=1e-3, seed=0, steps=2)
    assert e.value.reason.startswith("signal:")
    assert "p is read-only" in e.value.record["message"]


def test_a_rule_that_fails_to_load_is_a_load_error(host):
    with pytest.raises(RuleProcessError) as e:
        train_rule(SMOKE["smoke_quad"], RemoteRuleSource(host, "LR = 1e-3\nX = 1 / 0\n" + SCALAR_DELTA[10:]),
                   lr=1e-3, seed=0, steps=2)
    assert e.value.reason == "load_error"
