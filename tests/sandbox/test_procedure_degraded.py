"""Without namespaces and without the uid switch (OPTFORGE_SANDBOX_DISABLE=namespaces,privileges, as on
a machine without user namespaces) a procedure still runs, the missing layers are reported, and the
limits and the kill still hold."""

from __future__ import annotations

import pytest
from procedure_helpers import drive, source, wait_gone

from optforge.sandbox.procedure import ProcedureCall, ProcedureLimits, ProcedureSandbox

BOX = ProcedureSandbox(ProcedureLimits(cpu_s=1, wall_s=60, max_calls=3))


@pytest.fixture(autouse=True)
def degraded(monkeypatch):
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "namespaces,privileges")


def test_a_procedure_runs_and_reports_the_missing_layers():
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', task)\n"
    end, calls = drive(BOX.start(src, population=[], task="t", seed=0))
    assert end.ok and end.value["source"] == "rule for t" and len(calls) == 1
    assert not any(end.layers[k] for k in ("pid_namespace", "network", "private_tmp", "read_only_root"))
    assert end.layers["rlimits"] and end.layers["no_secrets"] and end.layers["no_capabilities"]


def test_the_limits_still_hold():
    loop = "def improve(population, utility, llm, task):\n    while True:\n        pass\n"
    run = BOX.start(loop, population=[], task="t", seed=0)
    assert drive(run)[0].failure == "cpu_time" and wait_gone(run.pid, run.child_pid)
    calls = "def improve(population, utility, llm, task):\n    while True:\n        utility('x', 's')\n"
    assert drive(BOX.start(calls, population=[], task="t", seed=0))[0].failure == "call_limit"


def test_a_kill_mid_call_still_takes_the_procedure_along():
    src = source('''
        def improve(population, utility, llm, task):
            return llm.prompt("s", "never answered")
    ''')
    run = BOX.start(src, population=[], task="t", seed=0)
    assert isinstance(run.poll(timeout=60), ProcedureCall) and run.child_pid is not None
    assert run.kill("stop").failure == "died" and wait_gone(run.pid, run.child_pid)


def test_a_broker_that_goes_away_still_takes_its_procedure_along():
    """Without a PID namespace the host kills the procedure itself when the status socket closes."""
    import os
    import subprocess
    import sys

    from test_procedure_channel import BROKER

    broker = subprocess.Popen([sys.executable, "-c", BROKER, "busy"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd="/", env=dict(os.environ))
    try:
        host_pid, child_pid = (int(x) for x in broker.stdout.readline().split())
        broker.kill()
        broker.wait()
        assert wait_gone(host_pid, child_pid)
    finally:
        broker.kill()
        broker.wait()
