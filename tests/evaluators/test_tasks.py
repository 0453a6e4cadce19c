"""Tasks, suites, the frozen corpus and the training loop (optforge.evaluators.tasks / train)."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from optforge import seeds
from optforge.evaluators import data as corpus
from optforge.evaluators.tasks import Problem, Suite, get_suite, suite_names
from optforge.evaluators.train import (
    RunTrace,
    eval_points,
    lr_factor,
    role_groups,
    train_rule,
    validation_curve,
)
from optforge.rule import ROLES, RuleOptimizer, load_rule

SUITES = ("smoke", "train", "train_quick", "heldout", "heldout_tiny")
ALL_TASKS = {t.name: t for s in SUITES for t in get_suite(s).tasks}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tasks run on one torch thread (as in the sandbox); multi-threaded ops crawl on a busy box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def adamw():
    return seeds.load("adamw").with_hparams(WD=0.0)


NAN_RULE = textwrap.dedent(
    """
    import torch
    LR = 1e-3
    def init(p, ctx):
        return {}
    def update(p, g, state, ctx):
        return torch.full_like(p, float("nan")) if ctx.t >= 3 else -ctx.lr * g
    """
)

# an averaging rule: SGD steps, evaluated at the running average of the iterates
AVERAGING_RULE = textwrap.dedent(
    """
    import torch
    LR = 1e-2
    def init(p, ctx):
        return {"avg": p.detach().clone()}
    def update(p, g, state, ctx):
        delta = -ctx.lr * g
        state["avg"].lerp_(p + delta, 1.0 / (ctx.t + 1))
        return delta
    def eval_point(p, state, ctx):
        return state["avg"].clone()
    """
)


# ------------------------------------------------------------------------------------------------
# suites


def test_shipped_suites_have_versions_seeds_and_unique_tasks():
    assert set(SUITES) <= set(suite_names())
    for name in SUITES:
        s = get_suite(name)
        assert s.name == name and s.version
        wanted = tuple(range(2, 9)) if name in ("train", "train_quick") else (2, 3, 4)  # 80 % power, docs/suites.md
        assert s.selection_seeds == (0, 1) and s.report_seeds == wanted
        assert len(set(s.task_names)) == len(s.tasks)
    assert 1 <= len(get_suite("smoke").tasks) <= 2
    assert 8 <= len(get_suite("train").tasks) <= 12
    train = set(get_suite("train").task_names)
    quick = get_suite("train_quick")
    assert set(quick.task_names) < train and 4 <= len(quick.tasks) <= 5
    assert {"matrix", "mlp"} <= {t.family for t in quick.tasks}
    assert not train & set(get_suite("heldout").task_names)
    assert len(get_suite("heldout_tiny").tasks) in (2, 3)


@pytest.mark.parametrize("name", sorted(ALL_TASKS))
def test_every_task_builds_and_hides_validation(name):
    task = ALL_TASKS[name]
    assert isinstance(task.steps, int) and task.steps > 0 and task.batch_size > 0
    hidden = task.build(0, validation=False)
    assert isinstance(hidden, Problem) and not hidden.has_validation
    with pytest.raises(RuntimeError, match="validation=False"):
        hidden.val_loss()
    names = [n for n, _ in hidden.model.named_parameters()]
    assert names and set(hidden.roles) == set(names) and set(hidden.roles.values()) <= set(ROLES)
    assert all(p.dtype == torch.float32 for p in hidden.model.parameters())
    loss = hidden.train_loss(0)
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    loss.backward()
    assert all(p.grad is not None for p in hidden.model.parameters())
    shown = task.build(0, validation=True)
    assert math.isfinite(shown.val_loss())
    # the trusted rebuild has the same init as the untrusted one
    for (n1, p1), (n2, p2) in zip(hidden.model.named_parameters(), shown.model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("name", sorted(ALL_TASKS))
def test_adamw_lowers_the_validation_loss(name, adamw):
    task = ALL_TASKS[name]
    n = min(task.steps, 10 if task.family in ("lm", "cnn") else 25)
    seen = []
    for lr in (1e-2, 1e-3):  # reparameterised tasks move Adam's best lr by up to 10x
        trace = train_rule(task, adamw, lr, seed=0, steps=n, total_steps=n, eval_steps=[0, n])
        assert trace.diverged_at is None and trace.steps_run == n
        val = validation_curve(task, 0, trace.snapshots)
        seen.append((lr, val[0], val[n], trace.train_loss[0], min(trace.train_loss[-3:])))
        if val[n] < val[0] and min(trace.train_loss[-3:]) < trace.train_loss[0]:
            return
    pytest.fail(f"{name}: AdamW did not lower the validation and training loss: {seen}")


def test_every_role_appears_in_the_smoke_suite():
    roles = set()
    for t in get_suite("smoke").tasks:
        roles |= set(t.build(0, validation=False).roles.values())
    assert {"hidden_matrix", "conv", "embedding", "head", "vector", "scalar"} <= roles


# ------------------------------------------------------------------------------------------------
# common random numbers


@pytest.mark.parametrize("name", ["smoke_mix", "quad_deepobs", "mlp_digits", "bytelm"])
def test_same_seed_same_run_other_seed_other_run(name, adamw):
    task = ALL_TASKS[name]
    a = train_rule(task, adamw, 3e-3, seed=0, steps=6)
    b = train_rule(task, adamw, 3e-3, seed=0, steps=6)
    c = train_rule(task, adamw, 3e-3, seed=1, steps=6)
    assert a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss
    for k in a.snapshots:
        for pname in a.snapshots[k]:
            assert torch.equal(a.snapshots[k][pname], b.snapshots[k][pname])


def test_a_shorter_run_is_a_prefix_of_the_full_run(adamw):
    task = ALL_TASKS["mlp_digits"]
    full = train_rule(task, adamw, 3e-3, seed=0, steps=40, total_steps=120, eval_steps=[20, 40])
    half = train_rule(task, adamw, 3e-3, seed=0, steps=20, total_steps=120, eval_steps=[20])
    assert half.train_loss == full.train_loss[:20]
    assert all(torch.equal(half.snapshots[20][n], full.snapshots[20][n]) for n in half.snapshots[20])


def test_training_leaves_the_global_rng_alone(adamw):
    before = torch.get_rng_state()
    train_rule(ALL_TASKS["smoke_mix"], adamw, 1e-2, seed=0, steps=3)
    assert torch.equal(before, torch.get_rng_state())


# ------------------------------------------------------------------------------------------------
# training loop


def test_eval_points_are_log_spaced_and_end_at_T():
    pts = eval_points(300)
    assert len(pts) == 16 and pts[-1] == 300 and pts == sorted(set(pts)) and pts[0] >= 1
    ratios = [b / a for a, b in zip(pts, pts[1:])]
    assert max(ratios) / min(ratios) < 1.5
    assert eval_points(5)[-1] == 5 and len(eval_points(5)) <= 5
    assert eval_points(1) == [1]
    with pytest.raises(ValueError):
        eval_points(0)


def test_schedule_warms_up_then_decays_to_ten_percent():
    T = 200
    f = [lr_factor(s, T) for s in range(T)]
    assert f[0] == pytest.approx(0.1) and max(f) == pytest.approx(1.0)
    assert f.index(max(f)) == 9  # 5 % warmup
    assert f[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:]))


def test_trace_records_steps_state_and_time(adamw):
    task = ALL_TASKS["smoke_mix"]
    trace = train_rule(task, adamw, 1e-2, seed=0)
    assert isinstance(trace, RunTrace)
    assert trace.steps_run == task.steps == len(trace.train_loss)
    assert sorted(trace.snapshots) == [e for e in eval_points(task.steps)]
    n_params = sum(p.numel() for p in task.build(0, validation=False).model.parameters())
    assert trace.state_bytes == 2 * 4 * n_params  # m and v in float32
    assert trace.step_seconds > 0


def test_a_nan_rule_stops_at_once():
    rule = load_rule(NAN_RULE, "nan")
    trace = train_rule(ALL_TASKS["mlp_digits"], rule, 1e-3, seed=0)
    assert trace.diverged_at == 3 and trace.steps_run == 3 and len(trace.train_loss) == 3


def test_an_exploding_loss_counts_as_diverged(adamw):
    sgd = load_rule("LR = 1.0\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n")
    trace = train_rule(ALL_TASKS["quad_illcond"], sgd, 10.0, seed=0)
    assert trace.diverged_at is not None and trace.steps_run < 20


def test_weight_decay_is_applied_outside_the_rule(adamw):
    task = ALL_TASKS["matfact"]
    plain = train_rule(task, adamw, 1e-3, seed=0, steps=10, eval_steps=[10])
    decayed = train_rule(task, adamw, 1e-3, seed=0, steps=10, eval_steps=[10], weight_decay=50.0)
    norm = lambda tr: sum(float(v.norm()) for v in tr.snapshots[10].values())  # noqa: E731
    assert norm(decayed) < norm(plain)


def test_bad_arguments_are_refused(adamw):
    task = ALL_TASKS["smoke_quad"]
    with pytest.raises(ValueError, match="exceeds total_steps"):
        train_rule(task, adamw, 1e-3, seed=0, steps=30, total_steps=20)
    with pytest.raises(ValueError, match="lr"):
        train_rule(task, adamw, float("nan"), seed=0)
    with pytest.raises(ValueError, match="eval_steps"):
        train_rule(task, adamw, 1e-3, seed=0, steps=5, eval_steps=[6])


# ------------------------------------------------------------------------------------------------
# trusted validation


def _live_run(task, rule, lr, seed, steps):
    """The same training, done by hand on a problem that holds validation data."""
    problem = task.build(seed, validation=True)
    opt = RuleOptimizer(role_groups(problem), rule, lr=lr, total_steps=steps)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step, steps)
        opt.zero_grad()
        problem.train_loss(step).backward()
        opt.step()
    opt.eval()
    problem.prepare_eval()
    return problem.val_loss()


@pytest.mark.parametrize("name,rule_src", [("mlp_digits", None), ("cnn_bnres", None), ("logreg", AVERAGING_RULE)])
def test_snapshots_give_the_live_models_validation_loss(name, rule_src, adamw):
    task = ALL_TASKS[name]
    rule = adamw if rule_src is None else load_rule(rule_src, "avg")
    trace = train_rule(task, rule, 3e-3, seed=1, steps=12, total_steps=12, eval_steps=[12])
    from_snapshot = validation_curve(task, 1, trace.snapshots)[12]
    assert from_snapshot == pytest.approx(_live_run(task, rule, 3e-3, 1, 12), rel=1e-5)


def test_validation_refuses_a_snapshot_that_does_not_fit(adamw):
    task = ALL_TASKS["smoke_mix"]
    trace = train_rule(task, adamw, 1e-2, seed=0, steps=4, eval_steps=[4])
    snap = dict(trace.snapshots[4])
    with pytest.raises(ValueError, match="missing"):
        validation_curve(task, 0, {4: {k: v for k, v in list(snap.items())[1:]}})
    bad = dict(snap)
    bad["head.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape"):
        validation_curve(task, 0, {4: bad})
    nan = {k: torch.full_like(v, float("nan")) for k, v in snap.items()}
    assert validation_curve(task, 0, {4: nan}) == {4: math.inf}


# ------------------------------------------------------------------------------------------------
# corpus


def test_corpus_splits_are_verified_and_disjoint():
    m = corpus.manifest()
    total = 0
    sources = {}
    for split in corpus.SPLITS:
        data = corpus.load_corpus(split)
        assert len(data) == m["splits"][split]["bytes"] > 10_000
        total += len(data)
        sources[split] = {s for s, _ in m["splits"][split]["sources"]}
    assert 0.8e6 < total < 1.3e6
    for a in corpus.SPLITS:
        for b in corpus.SPLITS:
            if a < b:
                assert not sources[a] & sources[b], (a, b)
    assert all("/" in s for s in sources["heldout_train"] | sources["heldout_val"])
    assert not any("/" in s for s in sources["train"] | sources["val"])


def test_a_tampered_corpus_is_caught(monkeypatch):
    data = corpus.load_corpus("val")
    with pytest.raises(corpus.CorpusError, match="SHA-256"):
        corpus.verify(data[:-1] + b"#", corpus.manifest()["splits"]["val"]["sha256"], "val")
    fake = {"splits": {s: dict(v) for s, v in corpus.manifest()["splits"].items()}}
    fake["splits"]["train"]["sha256"] = "0" * 64
    monkeypatch.setattr(corpus, "manifest", lambda: fake)
    corpus.load_corpus.cache_clear()
    try:
        with pytest.raises(corpus.CorpusError, match="modified"):
            corpus.load_corpus("train")
    finally:
        corpus.load_corpus.cache_clear()
    with pytest.raises(ValueError, match="unknown corpus split"):
        corpus.load_corpus("test")


# ------------------------------------------------------------------------------------------------
# user suites by dotted path


USER_MODULE = textwrap.dedent(
    """
    from dataclasses import dataclass
    import torch
    from torch import nn
    from optforge.evaluators.tasks import Problem, Suite, generator

    @dataclass(frozen=True)
    class Bowl:
        name: str = "bowl"
        family: str = "quadratic"
        steps: int = 10
        batch_size: int = 1

        def build(self, seed, *, validation):
            model = nn.ParameterDict({"x": nn.Parameter(torch.randn(3, generator=generator("bowl", seed)))})
            f = lambda: (model["x"] ** 2).sum()
            return Problem(model, lambda step: f(), (lambda: float(f())) if validation else None)

    def my_suite():
        return Suite("mine", "0.1", (Bowl(),))

    SUITE_OBJECT = my_suite()
    NOT_A_SUITE = 42
    """
)


def test_dotted_path_suites(tmp_path, monkeypatch, adamw):
    (tmp_path / "opf_user_tasks.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for path in ("opf_user_tasks:my_suite", "opf_user_tasks:SUITE_OBJECT"):
        s = get_suite(path)
        assert isinstance(s, Suite) and s.name == "mine" and s.task_names == ("bowl",)
    task = get_suite("opf_user_tasks:my_suite").tasks[0]
    trace = train_rule(task, adamw, 0.1, seed=0, eval_steps=[0, 10])
    val = validation_curve(task, 0, trace.snapshots)
    assert val[10] < val[0]


@pytest.mark.parametrize(
    "path,match",
    [
        ("no_such_module_xyz:suite", "cannot import module"),
        ("optforge.evaluators.tasks.suites:no_such_attr", "has no attribute"),
        ("opf_user_tasks:NOT_A_SUITE", "not an optforge Suite"),
        ("module.without.colon", "unknown suite"),
        ("mod:", "bad suite path"),
        ("", "suite must be"),
    ],
)
def test_bad_suite_paths_say_what_is_wrong(path, match, tmp_path, monkeypatch):
    (tmp_path / "opf_user_tasks.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=match):
        get_suite(path)


def test_suite_checks_its_tasks():
    with pytest.raises(ValueError, match="duplicate"):
        Suite("x", "1", (ALL_TASKS["smoke_quad"], ALL_TASKS["smoke_quad"]))
    with pytest.raises(TypeError, match="not a Task"):
        Suite("x", "1", ("nope",))
    with pytest.raises(ValueError, match="no tasks"):
        Suite("x", "1", ())


def test_the_worked_example_in_the_docs_runs(tmp_path, monkeypatch, adamw):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "suites.md").read_text()
    code = re.search(r"Worked example, `mypkg/tasks.py`:\n\n```python\n(.*?)```", doc, re.S)
    assert code, "docs/suites.md lost its worked example"
    pkg = tmp_path / "opf_doc_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text(code.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = get_suite("opf_doc_pkg.tasks:my_suite")
    task = suite.tasks[0]
    trace = train_rule(task, adamw, 1e-2, seed=0, steps=30, eval_steps=[0, 30])
    val = validation_curve(task, 0, trace.snapshots)
    assert val[30] < val[0]


def test_dataset_files_match_scikit_learns_loaders():
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

    from optforge.evaluators.tasks import datasets

    for ours, theirs in (
        (datasets.read_digits(), load_digits()),
        (datasets.read_breast_cancer(), load_breast_cancer()),
        (datasets.read_diabetes(), load_diabetes(scaled=False)),
    ):
        np.testing.assert_array_equal(ours[0], theirs.data)
        np.testing.assert_array_equal(ours[1], theirs.target)
