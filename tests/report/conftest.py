import math

import pytest

from optforge.store import Promotion, Store
from optforge.types import Candidate, EvaluationResult, Status


def _curves(scale):
    steps = [1, 2, 4, 8, 16, 32, 64, 100]
    return {
        task: {
            "steps": steps,
            "val": [scale * math.exp(-s / 40) + 0.1 for s in steps],
            "adamw_val": [math.exp(-s / 50) + 0.1 for s in steps],
            "train_loss": [],
        }
        for task in ("quad", "mlp_digits", "bytelm")
    }


@pytest.fixture
def run_dir(tmp_path):
    """A run store written through the Store API: a lineage of three candidates and a reference."""
    store = Store(tmp_path / "run")
    store.set_meta(config={"strategy": {"name": "symbolic"}})
    a = Candidate.new("LR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n", strategy="symbolic")
    b = Candidate.new(a.source.replace("-ctx.lr * g", "-ctx.lr * g.sign()"), parents=[a.id], strategy="symbolic",
                      note={"mutation": "insert sign"})
    c = Candidate.new(b.source.replace("LR = 1e-3", "LR = 3e-4"), parents=[b.id], strategy="symbolic",
                      note={"mutation": "constant x2^0.7"})
    ref = Candidate.new("LR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n# adamw\n",
                        strategy="seeds", note={"role": "reference", "seed": "adamw"})
    bad = Candidate.new("LR = 1\n", strategy="symbolic", note={"status": "invalid", "reason": "missing init"})
    store.add_proposals([a, b, c, ref, bad], {"n": 5})
    for cand, fit, scale in ((a, -0.5, 1.2), (b, 0.2, 0.9), (c, 0.6, 0.7), (ref, 0.0, 1.0)):
        tasks = {t: {"score": fit + d, "family": "mlp", "lr": 1e-3} for t, d in (("quad", 0.1), ("mlp_digits", -0.1), ("bytelm", 0.0))}
        store.add_evaluation(cand, EvaluationResult(Status.OK, stage="smoke", suite="smoke", suite_version="1"), seeds_spec="selection")
        store.add_evaluation(
            cand,
            EvaluationResult(Status.OK, stage="train", suite="train", suite_version="1", seeds=(0, 1),
                             metrics={"fitness": fit, "tasks": tasks, "step_time_ratio": 1.1, "state_bytes_per_param": 4.0},
                             artifacts={"curves": _curves(scale)}),
            seeds_spec="selection",
        )
    store.add_evaluation(bad, EvaluationResult(Status.INVALID, stage="smoke", feedback="missing init"), seeds_spec="selection")
    store.add_evaluation(c, EvaluationResult(Status.OK, stage="heldout", suite="heldout_tiny", suite_version="1",
                                             metrics={"fitness": 0.3, "tasks": {}}), seeds_spec="fresh")
    store.add_promotion(Promotion(c.id, "heldout", True, 0.3, 0.1, 0.05))
    store.add_promotion(Promotion(c.id, "promoted", True, 0.3, 0.1, 0.05))
    store.close()
    return tmp_path / "run", {"a": a, "b": b, "c": c, "ref": ref}
