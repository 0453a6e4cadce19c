"""A real but trivial evaluate function for engine tests (no sandbox, no training).

Fitness is read from the source: a line `FITNESS = x`. Markers change behaviour: `# HANG` sleeps
forever, `# SLOW s` sleeps s seconds, `# RAISE` raises, `# DIE` kills its own worker process, and
`# CRASH` returns a crashed result. Every call appends a line to $OPTFORGE_FAKE_LOG when set, so
tests can count the evaluations that really ran.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from optforge.types import EvaluationResult, Status


@dataclass(frozen=True)
class FakeRequest:
    source: str
    stage: str
    suite: str = "train"
    seeds: str = "selection"
    sandbox: dict = field(default_factory=dict)
    tune_wd: bool = False


def fake_source(fitness: float, *extra: str) -> str:
    return "\n".join([f"FITNESS = {fitness!r}", "LR = 1e-3", *extra, ""])


def fake_evaluate(request: FakeRequest) -> EvaluationResult:
    src = request.source
    log_path = os.environ.get("OPTFORGE_FAKE_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"{request.stage} {abs(hash(src)) % 10**8}\n")
    m = re.search(r"# SLOW ([0-9.]+)", src)
    if m:
        time.sleep(float(m.group(1)))
    if "# HANG" in src:
        time.sleep(3600)
    if "# DIE" in src and os.environ.get("OPTFORGE_FAKE_DIE", "1") == "1":
        os._exit(1)
    if "# RAISE" in src:
        raise RuntimeError("evaluator bug")
    if "# CRASH" in src:
        return EvaluationResult.failure(Status.CRASHED, "the rule raised at line 3", stage=request.stage)
    m = re.search(r"FITNESS = (-?[0-9.]+)", src)
    fit = float(m.group(1)) if m else 0.0
    if request.stage == "train_fresh_seeds":
        fit -= 0.5 if "# OVERFIT" in src else 0.0
    if request.stage == "heldout":
        fit = -1.0 if "# OVERFIT" in src else fit
    tasks = {"a": {"score": fit, "flags": []}, "b": {"score": fit, "flags": []}}
    return EvaluationResult(Status.OK, stage=request.stage, suite=request.suite, suite_version="fake-1",
                            seeds=(0, 1) if request.seeds == "selection" else (2, 3),
                            metrics={"fitness": fit, "robust": fit, "tasks": tasks, "wall_seconds": 0.01},
                            feedback="fine")
