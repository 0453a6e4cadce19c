"""ATTACK (failed on main at c56d3d8; fixed on main by b8c99cd, the rule process's RLIMIT_NPROC 1): without
root, nothing bounded how many processes a rule process starts. The job's `RLIMIT_NPROC`
(`Limits.processes`, 256) is set only when the job runs under a uid of its own (root mode; there the same
rule stopped at 250 forks); a non-root caller's job, root of its own user namespace, keeps the caller's
limit, often unlimited or in the tens of thousands, shared with every other process of the caller's. A
rule (checker off) forked 400 processes here, and could have gone on until the caller's limit or the
machine's `pid_max`, until the job's wall-clock timeout. This is the same rule for a caller without root.

The job process itself still has no process limit without root (job_process.py; since Linux 5.14 the
kernel counts `RLIMIT_NPROC` per user namespace, so it could: with a limit of 50 set in a rule process a
run here stopped at 45 forks, none of the caller's other processes counted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from optforge.sandbox.import_locations import import_locations

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
    from test_procedure_environ import LAUNCH_AS

    paths = ":".join(import_locations(["optforge"]) + [os.path.dirname(sys.executable)])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    out = subprocess.run([sys.executable, "-c", LAUNCH_AS, "4245", paths, NON_ROOT_CALLER], input=FORK_RULE,
                         capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    if not report["value"]["rule_layers"].get("pid_namespace"):
        pytest.skip("no user namespaces for a non-root caller here")
    message = report["value"]["failure"]["message"]
    assert message == "forked 0: Resource temporarily unavailable", message
