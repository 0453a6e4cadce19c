"""Without namespaces and without the uid switch the sandbox still runs jobs, says which layers are
missing (result and one warning), refuses jobs that require them, and still kills on timeout."""

from __future__ import annotations

import logging

import pytest
from sandbox_helpers import redteam, wait_no_processes

from optforge import sandbox
from optforge.sandbox import Limits, runner
from optforge.types import Status


@pytest.fixture
def degraded(monkeypatch):
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "namespaces,privileges")
    monkeypatch.setattr(runner, "_warned", set())


def test_runs_and_reports_missing_layers(degraded, adamw_source, caplog):
    with caplog.at_level(logging.WARNING, logger="optforge.sandbox"):
        res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30))
        res2 = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30))
    assert res.ok and res2.ok, res.exception
    for layer in ("pid_namespace", "network", "filesystem"):
        assert res.layers[layer] is False
    assert res.layers["process_group"] and res.layers["rlimits"] and res.layers["no_secrets"]
    warnings = [r for r in caplog.records if "inactive" in r.getMessage()]
    assert len(warnings) == 1 and "network" in warnings[0].getMessage()


def test_require_refuses_when_layer_missing(degraded, adamw_source):
    res = sandbox.run(adamw_source, "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=30, require=("network", "filesystem")))
    assert res.status is Status.LOST and res.reason == "layer_unavailable"
    assert "network" in res.exception and "filesystem" in res.exception


def test_timeout_still_kills_the_group(degraded):
    res = sandbox.run(redteam("infinite_loop"), "sandbox_jobs:rule_job", {}, sandbox.RULE_POLICY, Limits(timeout_s=1.5))
    assert res.reason == "timeout" and res.wall_s < 10
    assert res.uid == 0 or wait_no_processes(res.uid) == []
