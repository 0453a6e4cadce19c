import math

import pytest

from optforge import seeds as seed_lib
from optforge.search.symbolic import warmstarts
from optforge.search.symbolic.program import from_text, render
from optforge.store import Promotion, Store
from optforge.types import Candidate, EvaluationResult, Status

TASKS = ("quad", "mlp_digits", "bytelm")


def _curves(scale):
    steps = [1, 2, 4, 8, 16, 32, 64, 100]
    return {
        task: {
            "steps": steps,
            "val": [scale * math.exp(-s / 40) + 0.1 for s in steps],
            "adamw_val": [math.exp(-s / 50) + 0.1 for s in steps],
            "train_loss": [],
        }
        for task in TASKS
    }


def _tasks(fit, scale):
    """Per-task rows as the evaluator writes them (score version 2: `hw` is the 95 % half width)."""
    return {t: {"score": fit + d, "hw": 0.05 + i / 100, "family": "mlp", "lr": 1e-3 * (i + 1),
                "best_val": 0.1 + scale * (i + 1) / 10, "adamw_val": 0.1 + (i + 1) / 10, "flags": []}
            for i, (t, d) in enumerate(zip(TASKS, (0.1, -0.1, 0.0)))}


def _train(fit, scale, *, stage="train", artifacts=None):
    return EvaluationResult(
        Status.OK, stage=stage, suite="train", suite_version="1", seeds=(0, 1),
        metrics={"fitness": fit, "fitness_hw": 0.04, "score_version": 2, "tasks": _tasks(fit, scale),
                 "step_time_ratio": 1.1, "state_bytes_per_param": 4.0},
        artifacts={"curves": _curves(scale), **(artifacts or {})})


@pytest.fixture
def run_dir(tmp_path):
    """A run store written through the Store API as a symbolic run writes it: a warm start from AdamW's
    program and two rendered descendants, the funnel's reference scored at train_fresh_seeds, a smoke
    failure and a train crash."""
    store = Store(tmp_path / "run")
    store.set_meta(config={"strategy": {"name": "symbolic", "population": 24}, "suite": "train_quick",
                           "stages": ["smoke", "train"], "budget": {"max_candidates": 12}})
    adamw = warmstarts.program("adamw")
    signed = from_text(adamw.text().replace("u = div(m, denom)", "u = sign(m)"), slots=adamw.slots, lr=adamw.lr)
    a = Candidate.new(render(adamw), strategy="symbolic",
                      note={"mutation": "warm_start", "warm_start": True, "program": adamw.to_json()})
    b = Candidate.new(render(signed), parents=[a.id], strategy="symbolic", note={"mutation": "insert sign"})
    c = Candidate.new(render(signed.replace(lr=3e-4)), parents=[b.id], strategy="symbolic",
                      note={"mutation": "constant x2^0.7"})
    ref = Candidate(id="ref-adamw", source=seed_lib.source("adamw"), strategy="funnel",
                    note={"role": "reference", "seed": "adamw"})
    bad = Candidate.new("LR = 1\n", strategy="symbolic", note={"mutation": "delete"})
    boom = Candidate.new(render(signed.replace(lr=0.5)), parents=[b.id], strategy="symbolic", note={"mutation": "modify"})
    store.add_proposals([a, b, c, bad, boom], {"n": 5})
    store.add_proposals([ref], None)
    # as the evaluator records `task_detection_flags` (a symbolic program itself never compares ctx.t with a literal)
    line = c.source.splitlines().index("    t = _s(ctx.t)") + 1
    detection = {"task_detection": [{"line": line, "message": "compares ctx.t with 100"}]}
    for cand, fit, scale in ((a, -0.5, 1.2), (b, 0.2, 0.9), (c, 0.6, 0.7)):
        store.add_evaluation(cand, EvaluationResult(Status.OK, stage="smoke", suite="smoke", suite_version="1"), seeds_spec="selection")
        store.add_evaluation(cand, _train(fit, scale, artifacts=detection if cand is c else None), seeds_spec="selection")
    store.add_evaluation(bad, EvaluationResult(Status.INVALID, stage="smoke", feedback="missing init"), seeds_spec="selection")
    store.add_evaluation(boom, EvaluationResult(Status.OK, stage="smoke", suite="smoke", suite_version="1"), seeds_spec="selection")
    store.add_evaluation(boom, EvaluationResult(Status.CRASHED, stage="train", feedback="RuntimeError: <shape> mismatch"),
                         seeds_spec="selection")
    store.add_evaluation(c, _train(0.5, 0.7, stage="train_fresh_seeds"), seeds_spec="fresh")
    store.add_evaluation(ref, _train(0.0, 1.0, stage="train_fresh_seeds"), seeds_spec="fresh")
    store.add_evaluation(c, EvaluationResult(Status.OK, stage="heldout", suite="heldout_tiny", suite_version="1",
                                             metrics={"fitness": 0.3, "tasks": {}}), seeds_spec="fresh")
    store.add_promotion(Promotion(c.id, "heldout", True, 0.3, 0.1, 0.05))
    store.add_promotion(Promotion(c.id, "promoted", True, 0.3, 0.1, 0.05))
    store.close()
    return tmp_path / "run", {"a": a, "b": b, "c": c, "ref": ref, "bad": bad, "boom": boom}
