"""Fixtures of the sandbox tests (helpers: sandbox_helpers.py; jobs: sandbox_jobs.py)."""

from __future__ import annotations

import pytest

from optforge import seeds


@pytest.fixture(scope="session")
def adamw_source() -> str:
    return seeds.source("adamw")


@pytest.fixture(scope="session")
def layers_here() -> dict[str, bool]:
    """Which isolation layers this machine gives a job (the red-team rows that need one skip without it)."""
    from optforge import sandbox

    res = sandbox.run("x = 1\n", "optforge.sandbox.selftest:noop", {}, sandbox.RULE_POLICY, sandbox.Limits(timeout_s=60))
    assert res.ok, res.exception
    return res.layers
