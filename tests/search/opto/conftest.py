"""One fixed rule, evaluation result (with a trace in the optforge/evaluators/trace.py format) and
task inputs, shared by the OPTO tests."""

from __future__ import annotations

import pytest

from optforge.search.opto.sections import TaskInput
from optforge.types import EvaluationResult, Status

SOURCE = '''"""Adam with a slow second moment."""

import math

import torch

LR = 1e-3  # base step
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WARMUP = 100
ONE_MINUS = 1 - BETA2


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=ONE_MINUS)
    scale = min(1.0, ctx.t / WARMUP)
    return -ctx.lr * scale * m / (v.sqrt() + EPS)
'''

LABELS = {"tiny_mlp": "task 2", "small_cnn": "task 1", "char_lm": "task 3"}

INPUTS = {
    "tiny_mlp": TaskInput("mlp", {"hidden_matrix": 34567, "vector": 196, "head": 650}, 1000, 128),
    "small_cnn": TaskInput("cnn", {"conv": 23328, "vector": 96, "head": 2570}, 480, 64),
    "char_lm": TaskInput("lm", {"embedding": 8192, "hidden_matrix": 196608, "vector": 1024, "head": 8192}, 2024, 32),
}


def _point(step, g, u, r, roles):
    return {"step": step, "roles": {role: {"grad_norm": g * (i + 1), "update_norm": u * (i + 1), "update_ratio": r}
                                    for i, role in enumerate(roles)}}


TRACE = {"tasks": [
    {"task": "task 1",
     "scored": {"runs": 2, "lr_mult": 0.31622776601683794,
                "points": [_point(s, 1.5 / s, 2e-3, 1e-3, ("conv", "head", "vector")) for s in (50, 100, 200, 300, 480)]},
     "diverged": {"lr_mult": 3.1622776601683795, "steps": 160,
                  "points": [_point(20, 4.0, 0.5, 0.2, ("conv", "head", "vector")),
                             _point(40, 900.0, 80.0, None, ("conv", "head", "vector"))],
                  "first_nonfinite": {"step": 47, "kind": "update", "role": "conv", "shape": [16, 3, 3, 3]}}},
    {"task": "task 2",
     "scored": {"runs": 2, "lr_mult": 1.0,
                "points": [_point(s, 0.8, 1e-3, 5e-4, ("hidden_matrix", "head", "vector")) for s in (100, 500, 1000)]},
     "diverged": None},
    {"task": "task 3",
     "scored": {"runs": 2, "lr_mult": 1.0, "points": []},
     "diverged": {"lr_mult": 1.0, "steps": 2024, "points": [], "first_nonfinite":
                  {"step": 812, "kind": "loss", "role": None, "shape": None}}},
]}

TASK_ROWS = {
    "tiny_mlp": {"score": 0.412, "speedup": 1.33, "best_val": 0.30125, "adamw_val": 0.30511, "lr": 1e-3,
                 "lr_mult": 1.0, "family": "mlp", "flags": []},
    "small_cnn": {"score": -0.75, "speedup": 0.5946, "best_val": 1.2034, "adamw_val": 1.1502, "lr": 3.1622776601683794e-4,
                  "lr_mult": 0.31622776601683794, "family": "cnn", "flags": ["lr_edge_low"]},
    "char_lm": {"score": -3.0, "speedup": 0.0, "best_val": None, "adamw_val": 1.874, "lr": 1e-3, "lr_mult": 1.0,
                "family": "lm", "flags": ["diverged"]},
}


def make_result(trace=True) -> EvaluationResult:
    return EvaluationResult(Status.OK, stage="train", suite="default", metrics={"fitness": -1.11267, "tasks": TASK_ROWS},
                            artifacts={"trace": TRACE} if trace else {}, feedback="Status ok.")


def make_crashed() -> EvaluationResult:
    exc = ('Traceback (most recent call last):\n  File "/opt/job.py", line 88, in run\n'
           '  File "<rule <candidate>>", line 21, in update\nRuntimeError: The size of tensor a (3) must match '
           'the size of tensor b (4) at non-singleton dimension 1')
    return EvaluationResult.failure(Status.CRASHED, "The rule raised an error (or its process died) while training "
                                    "(reason: exception). RuntimeError: The size of tensor a (3) must match the size "
                                    "of tensor b (4) at non-singleton dimension 1", stage="train", exception=exc)


@pytest.fixture
def source():
    return SOURCE


@pytest.fixture
def labels():
    return dict(LABELS)


@pytest.fixture
def inputs():
    return dict(INPUTS)


@pytest.fixture
def result():
    return make_result()


@pytest.fixture
def crashed():
    return make_crashed()


@pytest.fixture
def summary_result():
    return make_result(trace=False)


@pytest.fixture(name="make_result")
def _make_result_fixture():
    """`make_result(trace=True)`: the fixed ok result, for tests that need several."""
    return make_result
