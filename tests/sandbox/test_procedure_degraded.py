"""Procedures without namespaces. With neither namespaces nor a uid of its own
(OPTFORGE_SANDBOX_DISABLE=namespaces,privileges, as on a machine without user namespaces and without
root) a procedure is refused before it is read: its process would share the user's uid and PID
namespace. As root without namespaces (OPTFORGE_SANDBOX_DISABLE=namespaces) it runs under a uid of its
own: it still runs, the missing layers are reported, and the limits and the kill still hold."""

from __future__ import annotations

import os

import pytest
from procedure_helpers import drive, source, wait_gone

from optforge.sandbox.procedure import ProcedureCall, ProcedureLimits, ProcedureSandbox

BOX = ProcedureSandbox(ProcedureLimits(cpu_s=1, wall_s=60, max_calls=3))


_UID_OF_ITS_OWN: dict[str, bool] = {}


@pytest.fixture
def no_namespaces(monkeypatch):
    """Namespaces off; the uid switch on. Skips where it cannot give a procedure a uid of its own: not
    root, or the interpreter lives where a fresh uid cannot read it without a mount namespace (a 0700
    /root holding pyenv); the procedure is refused there, as test_a_procedure_sharing_... shows."""
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "namespaces")
    if "ok" not in _UID_OF_ITS_OWN:
        probe = "def improve(population, utility, llm, task):\n    return 'x'\n"
        _UID_OF_ITS_OWN["ok"] = drive(BOX.start(probe, population=[], task="t", seed=0))[0].failure != "isolation"
    if not _UID_OF_ITS_OWN["ok"]:
        pytest.skip("without namespaces this machine cannot give a procedure a uid of its own (not root, or the "
                    "interpreter is unreadable to a fresh uid without a mount namespace): procedures are refused")


def test_a_procedure_sharing_the_users_uid_and_processes_is_refused(monkeypatch):
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "namespaces,privileges")
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', task)\n"
    run = BOX.start(src, population=[], task="t", seed=0)
    end, calls = drive(run)
    assert end.failure == "isolation" and calls == [] and end.calls == 0, end  # refused before the source was read
    assert "user namespaces" in end.reason and "sysctl" in end.reason and "OPTFORGE_SANDBOX_DISABLE" in end.reason
    assert not end.layers["processes_isolated"] and not end.layers["pid_namespace"]
    assert wait_gone(run.pid, run.child_pid)


def test_a_procedure_runs_and_reports_the_missing_layers(no_namespaces):
    src = "def improve(population, utility, llm, task):\n    return llm.prompt('s', task)\n"
    end, calls = drive(BOX.start(src, population=[], task="t", seed=0))
    assert end.ok and end.value["source"] == "rule for t" and len(calls) == 1
    assert not any(end.layers[k] for k in ("pid_namespace", "network", "private_tmp", "read_only_root"))
    assert end.layers["rlimits"] and end.layers["no_secrets"] and end.layers["no_capabilities"]
    assert end.layers["unprivileged"] and end.layers["processes_isolated"]  # a uid of its own


def test_the_limits_still_hold(no_namespaces):
    loop = "def improve(population, utility, llm, task):\n    while True:\n        pass\n"
    run = BOX.start(loop, population=[], task="t", seed=0)
    assert drive(run)[0].failure == "cpu_time" and wait_gone(run.pid, run.child_pid)
    calls = "def improve(population, utility, llm, task):\n    while True:\n        utility('x', 's')\n"
    assert drive(BOX.start(calls, population=[], task="t", seed=0))[0].failure == "call_limit"


def test_a_kill_mid_call_still_takes_the_procedure_along(no_namespaces):
    src = source('''
        def improve(population, utility, llm, task):
            return llm.prompt("s", "never answered")
    ''')
    run = BOX.start(src, population=[], task="t", seed=0)
    assert isinstance(run.poll(timeout=60), ProcedureCall) and run.child_pid is not None
    assert run.kill("stop").failure == "died" and wait_gone(run.pid, run.child_pid)


def test_a_broker_that_goes_away_still_takes_its_procedure_along(no_namespaces):
    """Without a PID namespace the host kills the procedure itself when the status socket closes."""
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
