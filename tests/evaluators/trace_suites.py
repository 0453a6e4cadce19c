"""A test-only suite for the trace test (tests/evaluators/test_trace.py), loaded by dotted path
`trace_suites:mix` with this folder on sys.path (the sandboxed job gets the same sys.path).

One task, the smoke suite's `smoke_mix` (a parameter of every role), under the full candidate
protocol (halving, grid extension), which the smoke suite skips. Same task and version as the smoke
suite, so the smoke suite's AdamW baselines score it."""

from optforge.evaluators.tasks import Suite
from optforge.evaluators.tasks.smoke import SmokeMix


def mix() -> Suite:
    return Suite("trace_mix", "1", (SmokeMix(),), (0, 1), (2, 3, 4), "test-only: smoke_mix under the full protocol")
