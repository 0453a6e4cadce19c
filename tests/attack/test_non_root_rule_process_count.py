"""ATTACK (failed on main at c56d3d8; fixed on main by b8c99cd, the rule process's RLIMIT_NPROC 1): without
root, nothing bounded how many processes a rule process starts. The job's `RLIMIT_NPROC`
(`Limits.processes`, 256) is set only when the job runs under a uid of its own (root mode; there the same
rule stopped at 250 forks); a non-root caller's job, root of its own user namespace, keeps the caller's
limit, often unlimited or in the tens of thousands, shared with every other process of the caller's. A
rule (checker off) forked 400 processes here, and could have gone on until the caller's limit or the
machine's `pid_max`, until the job's wall-clock timeout. This is the same rule for a caller without root.

The job process of a non-root caller had no process limit either; since Linux 5.14 the kernel counts
`RLIMIT_NPROC` per user namespace, so the job sets `Limits.processes` there too
(`layers.nproc_counted_per_user_namespace`): the second test forks from the job process itself."""

from __future__ import annotations

import os
import sys

import pytest

FORKS = 300

FORK_RULE = '''
import torch
LR = 1e-3

def init(p, ctx):
    import os, signal
    pids, error = [], None
    for _ in range(FORKS):
        try:
            pid = os.fork()
        except OSError as e:
            error = e.strerror
            break
        if pid == 0:
            os.execv("/bin/sleep", ["sleep", "30"])
        pids.append(pid)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    raise RuntimeError(f"forked {len(pids)}: {error}")

def update(p, g, state, ctx):
    return -ctx.lr * g
'''.replace("FORKS", str(FORKS))


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the caller as another (non-root) uid, which needs root")
def test_a_non_root_users_rule_process_cannot_fork_past_the_process_limit():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sandbox"))
    from test_os_layers import NON_ROOT_CALLER
    from test_procedure_environ import run_as

    report = run_as(4245, NON_ROOT_CALLER, FORK_RULE)
    assert report["ok"], report
    if not report["value"]["rule_layers"].get("pid_namespace"):
        pytest.skip("no user namespaces for a non-root caller here")
    message = report["value"]["failure"]["message"]
    assert message == "forked 0: Resource temporarily unavailable", message


JOB_CALLER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from optforge import sandbox
res = sandbox.run(sys.stdin.read(), "sandbox_jobs:exec_job", {}, sandbox.RULE_POLICY,
                  sandbox.Limits(timeout_s=120.0, static_check=False, processes=64))
print(json.dumps({"exception": res.exception, "layers": res.layers}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the caller as another (non-root) uid, which needs root")
def test_a_non_root_users_job_process_cannot_fork_past_the_process_limit():
    from optforge.sandbox.layers import nproc_counted_per_user_namespace

    if not nproc_counted_per_user_namespace():
        pytest.skip("this kernel counts RLIMIT_NPROC per uid across user namespaces (before 5.14)")
    sandbox_tests = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sandbox"))
    sys.path.insert(0, sandbox_tests)
    from test_procedure_environ import run_as

    # LAUNCH_AS hands the caller only the script; the sandbox tests' directory goes in through sys.path
    caller = "import sys; sys.argv = ['', " + repr(sandbox_tests) + "]\n" + JOB_CALLER
    report = run_as(4247, caller, FORK_RULE, (sandbox_tests,))
    if not report["layers"].get("pid_namespace"):
        pytest.skip("no user namespaces for a non-root caller here")
    message = str(report["exception"])
    forked = int(message.split("forked ")[1].split(":")[0])
    assert forked < 64 and "Resource temporarily unavailable" in message, message
