"""Fixtures shared by the split-job tests of this directory."""

from __future__ import annotations

import pytest

from optforge.sandbox.rule_host import RuleHost


@pytest.fixture(scope="module")
def host():
    """A rule host per test module, forked from the test process: fine for curves and failures, not
    for the hunter (earlier tests leave models in this process; the sandbox tests fork the host from a
    clean job)."""
    h = RuleHost.start()
    yield h
    h.close()
