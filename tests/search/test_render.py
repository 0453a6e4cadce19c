"""Results as prompt text (optforge/search/common/render.py): every text within its character budget."""

import pytest

from optforge.llm.measured import unmeasured, visible
from optforge.search.common.render import render_result, summarise, trace_text
from optforge.types import EvaluationResult, Status

ROLES = ("hidden_matrix", "conv", "embedding", "head", "vector", "scalar")


def _point(step, scale=1.0):
    return {"step": step, "roles": {r: {"grad_norm": scale * (i + 1), "update_norm": 1e-3 * scale, "update_ratio": None}
                                    for i, r in enumerate(ROLES)}}


def _trace(n_tasks=10):
    tasks = []
    for i in range(1, n_tasks + 1):
        tasks.append({
            "task": f"task {i}",
            "scored": {"runs": 2, "lr_mult": 1.0, "points": [_point(s) for s in (1, 2, 4, 8, 16, 32, 64)]},
            "diverged": None if i % 3 else {"lr_mult": 3.16, "steps": 64, "points": [_point(1), _point(2, 1e3)],
                                            "first_nonfinite": {"step": 3, "kind": "update", "role": "vector",
                                                                "shape": [32]}},
        })
    return {"tasks": tasks}


def _result(trace=None):
    metrics = {"fitness": -0.5, "step_time_ratio": 2.345, "state_bytes_per_param": 8.0,
               "tasks": {"a": {"score": -0.5, "speedup": 0.7, "lr_mult": 1.0, "family": "mlp", "flags": []}}}
    artifacts = {"trace": trace} if trace else {}
    return EvaluationResult(Status.OK, stage="train", metrics=metrics, artifacts=artifacts,
                            feedback="Status ok; fitness -0.50.\nEach step costs 2.3x AdamW's optimizer time.")


@pytest.mark.parametrize("budget", [80, 300, 1000, 5000])
def test_trace_text_keeps_whole_lines_within_the_budget_divergences_first(budget):
    text = trace_text(_trace(), budget)
    assert len(text) <= budget
    lines = text.splitlines()
    assert not lines or lines[0].startswith("Trace (per role")
    if budget >= 300:  # the whole trace is longer than 5000 characters
        assert lines[1] == ("task 3: a run at lr multiplier 3.16 diverged; first non-finite value: "
                            "the update at step 3, role vector, shape (32,)")
        assert lines[-1].endswith("more lines left out)")


def test_render_result_counts_its_budget_on_the_unmeasured_text():
    r = _result(_trace())
    for budget in (200, 700, 2000):
        text = render_result(r, budget)
        assert len(unmeasured(text)) <= budget
    text = visible(render_result(r, 2000))
    assert "step time vs AdamW x2.35" in text and "task 3: a run at lr multiplier 3.16 diverged" in text
    assert "Trace" not in render_result(_result(), 2000)  # a summary-detail result has no trace


def test_summarise_keeps_the_trace_text_only_for_trace_results():
    assert "trace" not in summarise(_result())
    s = summarise(_result(_trace()), trace_budget=400)
    assert s["trace"].startswith("Trace") and len(s["trace"]) <= 400
