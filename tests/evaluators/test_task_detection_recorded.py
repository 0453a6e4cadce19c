"""The evaluator records task detection flags on the result, for `show`, `report` and export."""

from __future__ import annotations

from optforge import seeds
from optforge.evaluators import EvalRequest, baseline_payload, evaluate
from optforge.rule import with_hparams_source
from optforge.types import Status


def test_flags_are_recorded_on_the_result():
    source = with_hparams_source(seeds.source("adamw"), {"LR": 0.1})
    lines = source.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("def update(")) + 1
    lines.insert(at, "    if ctx.T == 5:\n        g = g * 1.0")
    flagged = "\n".join(lines) + "\n"
    r = evaluate(EvalRequest(flagged, "smoke", suite="smoke", baselines=baseline_payload("smoke")))
    assert r.status is Status.OK, r.feedback
    assert [f["line"] for f in r.artifacts["task_detection"]] == [at + 1]
    assert "ctx.T" in r.artifacts["task_detection"][0]["message"]
