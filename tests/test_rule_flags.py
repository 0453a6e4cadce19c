"""Task detection flags: comparisons of set-up quantities against specific numbers (issue 15 item 7)."""

from __future__ import annotations

import pytest

from optforge import seeds
from optforge.rule_flags import task_detection_flags
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.program import render

HEAD = "import torch\nLR = 1e-3\n\ndef init(p, ctx):\n    return {}\n\ndef update(p, g, state, ctx):\n"


@pytest.mark.parametrize("name", seeds.names())
def test_no_seed_is_flagged(name):
    assert task_detection_flags(seeds.source(name)) == []


def test_no_symbolic_warm_start_is_flagged():
    assert [n for n in warmstarts.names() if task_detection_flags(render(warmstarts.program(n)))] == []


FLAGGED = [
    ("if ctx.T == 5:\n        return g", "ctx.T", 5),
    ("if 300 <= ctx.t:\n        return g", "ctx.t", 300),
    ("if ctx.lr == 0.003:\n        return g", "ctx.lr", 0.003),
    ("if ctx.T in (5, 10):\n        return g", "ctx.T", 5),
    ("if p.shape[0] == 784:\n        return g", "a shape element", 784),
    ("if g.size(-1) != 10:\n        return g", "a shape element", 10),
    ("if p.size()[1] > 3:\n        return g", "a shape element", 3),
    ("if p.numel() == 7850:\n        return g", "numel", 7850),
    ("if torch.numel(p) < 100:\n        return g", "numel", 100),
    ("if int(ctx.T) == -7:\n        return g", "ctx.T", -7),
    ("if 0 < ctx.t < 50:\n        return g", "ctx.t", 50),
]


@pytest.mark.parametrize("body,what,value", FLAGGED, ids=[f[0].split(":")[0] for f in FLAGGED])
def test_flagged_with_its_line(body, what, value):
    (flag,) = task_detection_flags(HEAD + "    " + body + "\n    return -ctx.lr * g\n")
    assert flag.line == 8 and f"compares {what} with {value!r}" in flag.message


@pytest.mark.parametrize(
    "body",
    [
        "if ctx.t == 1:\n        return g",  # first step
        "if p.ndim >= 2 and p.shape[0] > 1:\n        return g",  # matrices vs vectors
        "if ctx.T is None or ctx.t <= 2:\n        return g",
        "if ctx.t % 10 == 0:\n        return g",  # a period is not a comparison with the quantity itself
        "if p.T.shape == g.shape:\n        return g",
        "if p.numel() > 0:\n        return g",
    ],
)
def test_ordinary_comparisons_not_flagged(body):
    assert task_detection_flags(HEAD + "    " + body + "\n    return -ctx.lr * g\n") == []


def test_renamed_ctx_parameter_is_followed():
    src = HEAD.replace("state, ctx)", "state, c)") + "    if c.T == 5:\n        return g\n    return -c.lr * g\n"
    assert [f.line for f in task_detection_flags(src)] == [8]


def test_unparseable_source_has_no_flags():
    assert task_detection_flags("def f(:\n") == []
