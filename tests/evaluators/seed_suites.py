"""Test-only suites for `baselines.add_seeds` (tests/evaluators/test_baselines_seeds.py), loaded by dotted
path with this folder on sys.path (the sandboxed job gets the same sys.path). One 20-step quadratic, so
a build costs seconds; `grown` is `small` at a new version with more seeds, `changed` has other steps."""

from optforge.evaluators.tasks import Suite
from optforge.evaluators.tasks.smoke import SmokeQuadratic


def small() -> Suite:
    return Suite("seedgrow", "1", (SmokeQuadratic(),), (0,), (1,), "test-only: one tiny quadratic")


def grown() -> Suite:
    return Suite("seedgrow", "2", (SmokeQuadratic(),), (0,), (1, 2), "test-only: a report seed more", (7,))


def changed() -> Suite:
    return Suite("seedgrow", "3", (SmokeQuadratic(steps=30),), (0,), (1, 2), "test-only: another task", (7,))
