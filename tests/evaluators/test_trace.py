"""Trace detail (issue 17, item 4): per-role norms from the trusted trainer, in real sandboxed evaluations."""

import json
from pathlib import Path

import pytest

from optforge import seeds
from optforge.evaluators import EvalRequest, baseline_payload, evaluate
from optforge.evaluators.tasks.smoke import SmokeMix
from optforge.evaluators.trace import parse_run_trace
from optforge.roles import ROLES
from optforge.rule import with_hparams_source
from optforge.search.common.render import render_result, summarise, trace_text
from optforge.types import Status

HERE = Path(__file__).resolve().parent
K = 5  # the update at which the rule below turns the conv weights to NaN (the screen runs are 7 steps)

NAN_ON_CONV = f"""
LR = 0.1


def init(p, ctx):
    return {{}}


def update(p, g, state, ctx):
    if ctx.role == "conv" and ctx.t == {K}:
        return g * float("nan")
    return -ctx.lr * g
"""
ADAMW = with_hparams_source(seeds.source("adamw"), {"LR": 0.1})


@pytest.fixture(scope="module")
def mix_suite():
    """The test-only suite by dotted path (the job gets this process's sys.path)."""
    import sys

    sys.path.insert(0, str(HERE))
    yield "trace_suites:mix"
    sys.path.remove(str(HERE))


@pytest.fixture(scope="module")
def smoke_payload():
    return baseline_payload("smoke")  # the same task and suite version (trace_suites.py)


def _names_absent(trace: dict) -> None:
    text = json.dumps(trace)
    model = SmokeMix().build(0, validation=False).model
    for name in ["smoke_mix", "trace_mix", *(n for n, _ in model.named_parameters())]:
        assert f'"{name}"' not in text and f"{name} " not in text, name


def test_a_rule_that_goes_nan_at_step_k_on_one_role_is_reported_by_step_and_role(mix_suite, smoke_payload):
    r = evaluate(EvalRequest(NAN_ON_CONV, "train", suite=mix_suite, baselines=smoke_payload, detail="trace"))
    assert r.status is Status.DIVERGED, r.feedback
    (task,) = r.artifacts["trace"]["tasks"]
    assert task["task"] == "task 1"
    first = task["diverged"]["first_nonfinite"]
    conv_shape = list(SmokeMix().build(0, validation=False).model.conv.weight.shape)
    assert first == {"step": K, "kind": "update", "role": "conv", "shape": conv_shape}
    # the eval points up to it (the 7-step screen run evaluates every step): every role with finite
    # norms before, and at step K the conv update has none
    points = task["diverged"]["points"]
    assert [p["step"] for p in points] == list(range(1, K + 1))
    assert all(set(p["roles"]) == set(ROLES) for p in points)
    assert all(v is not None and v >= 0 for p in points[:-1] for norms in p["roles"].values() for v in norms.values())
    at_k = points[-1]["roles"]
    assert at_k["conv"]["update_norm"] is None and at_k["conv"]["grad_norm"] > 0
    assert all(at_k[role]["update_norm"] > 0 for role in ROLES if role != "conv")
    _names_absent(r.artifacts["trace"])
    text = render_result(r, budget=800)
    assert f"the update at step {K}, role conv, shape {tuple(conv_shape)}" in text and len(text) <= 800


def test_scored_runs_carry_per_role_norms_and_summary_detail_none(mix_suite, smoke_payload):
    r = evaluate(EvalRequest(ADAMW, "train", suite=mix_suite, baselines=smoke_payload, detail="trace"))
    assert r.status is Status.OK, r.feedback
    (task,) = r.artifacts["trace"]["tasks"]
    scored = task["scored"]
    assert scored["runs"] == 2 and scored["lr_mult"] == r.metrics["tasks"]["smoke_mix"]["lr_mult"]
    assert [p["step"] for p in scored["points"]] == r.artifacts["curves"]["smoke_mix"]["steps"]
    for p in scored["points"]:
        for role, norms in p["roles"].items():
            assert norms["grad_norm"] > 0 and norms["update_norm"] > 0 and norms["update_ratio"] > 0, (p["step"], role)
    _names_absent(r.artifacts["trace"])
    assert "scored runs (2)" in trace_text(r.artifacts["trace"], 400)
    assert summarise(r)["trace"] and len(summarise(r, trace_budget=300)["trace"]) <= 300

    plain = evaluate(EvalRequest(ADAMW, "train", suite=mix_suite, baselines=smoke_payload))
    assert "trace" not in plain.artifacts
    assert plain.metrics["tasks"] == r.metrics["tasks"]  # recording the trace changes no score


@pytest.mark.parametrize("bad", [
    {"points": [{"step": 3, "roles": {"vector": {"grad_norm": float("nan"), "update_norm": 1.0, "update_ratio": 1.0}}}],
     "first_nonfinite": None},
    {"points": [{"step": 3, "roles": {"fc1.weight": {"grad_norm": 1.0, "update_norm": 1.0, "update_ratio": 1.0}}}],
     "first_nonfinite": None},
    {"points": [{"step": 4, "roles": {}}], "first_nonfinite": None},  # not an eval step of the run
    {"points": [], "first_nonfinite": {"step": 2, "kind": "update", "role": "conv", "shape": ["conv.weight"]}},
    {"points": [], "first_nonfinite": {"step": 99, "kind": "loss", "role": None, "shape": None}},
    {"points": [], "first_nonfinite": None, "names": ["fc1.weight"]},
])
def test_a_malformed_trace_is_refused(bad):
    with pytest.raises(ValueError):
        parse_run_trace(bad, eval_steps=(1, 3, 10), steps=10)
    ok = {"points": [{"step": 3, "roles": {"vector": {"grad_norm": 1.0, "update_norm": None, "update_ratio": 0.5}}}],
          "first_nonfinite": {"step": 9, "kind": "gradient", "role": "head", "shape": [4, 2]}}
    assert parse_run_trace(ok, eval_steps=(1, 3, 10), steps=10) == ok
