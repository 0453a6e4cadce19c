"""A baselines build never stores a machine's failure as a rule's divergence without saying so.

On a machine where every sandbox job failed (a CUDA build of torch over an absolute address-space
limit: "memory" at every run), `--add-references` stored every reference at the floor, -3.00 on every
task, and exited 0. Now a call whose every run fails twice raises `AllRunsFailed` (the CLI's error,
nothing saved), and a build where only some runs fail names them in its cost entry.
"""

from __future__ import annotations

import pytest

from optforge import sandbox, seeds
from optforge.evaluators.baselines.building import Tally, failed_runs
from optforge.evaluators.protocol import RunSpec
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.train import eval_points
from optforge.evaluators.validate import AllRunsFailed, SandboxExecutor

# fails on smoke_mix's 3-D conv weight only (a rule error the sandbox reports as the run's failure)
FAILS_ON_CONV = seeds.source("sgd").replace(
    'def update(p, g, state, ctx):\n', 'def update(p, g, state, ctx):\n    if p.dim() == 3:\n        raise ValueError("conv")\n')


def _executor(source: str) -> SandboxExecutor:
    suite = get_suite("smoke")
    return SandboxExecutor(source, "smoke", {t.name: t for t in suite.tasks}, sandbox.Limits(timeout_s=120.0),
                           sandbox.RULE_POLICY, workers=1, isolate_failures=True, progress=Tally(0, None))


def _spec(task: str, seed: int) -> RunSpec:
    steps = 10
    return RunSpec(task, 0, 1e-2, seed, steps, steps, tuple(s for s in eval_points(steps) if s <= steps), 0.0)


def test_a_call_whose_every_run_fails_raises_instead_of_storing_divergence():
    assert "raise ValueError" in FAILS_ON_CONV
    ex = _executor(FAILS_ON_CONV)
    with pytest.raises(AllRunsFailed, match="every one of the 2 runs"):
        ex([_spec("smoke_mix", 0), _spec("smoke_mix", 1)])
    assert len(ex.failed) == 2 and all("smoke_mix" in f for f in ex.failed)


def test_some_failed_runs_are_kept_as_diverged_and_named():
    ex = _executor(FAILS_ON_CONV)
    outs = ex([_spec("smoke_quad", 0), _spec("smoke_mix", 0)])
    by_task = {o.spec.task: o for o in outs}
    assert not by_task["smoke_quad"].diverged and by_task["smoke_mix"].diverged
    assert len(ex.failed) == 1 and ex.failed[0].startswith("smoke_mix")
    assert failed_runs(ex.failed) == {"failed_runs": ex.failed} and failed_runs([]) == {}
