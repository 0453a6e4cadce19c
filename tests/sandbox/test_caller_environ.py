"""A job cannot read the environment of the process that started it (the evaluator, which may hold
OPENAI_API_KEY and the like), even where it runs under the caller's own uid without a PID namespace
of its own (a non-root caller on a machine without user namespaces; here OPTFORGE_SANDBOX_DISABLE=
namespaces,privileges run as uid 65534). There `/proc/<caller>/environ` passes the kernel's uid check;
what stops it is the caller being non-dumpable (`layers.undumpable`, called by `sandbox.run`).

A real caller process runs as uid 65534 with a canary in its environment. Before its first sandbox
call a plain child of the same uid reads the canary (the reading code works); then a job, checker
off, reads `/proc/<caller pid>/environ`. Before the fix the job returned the canary.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from test_procedure_environ import LAUNCH_AS, NOBODY

from optforge.sandbox.import_locations import import_locations

CALLER = '''
import json, os, subprocess, sys
sys.path.insert(0, HERE)
from optforge import sandbox
me = str(os.getpid())
read = "import sys\\nprint(open('/proc/' + sys.argv[1] + '/environ', 'rb').read())"
control = subprocess.run([sys.executable, "-c", read, me], capture_output=True, text=True).stdout
JOB = "def body(payload):\\n    try:\\n        return {'seen': str(open('/proc/' + payload['pid'] + '/environ', 'rb').read())}\\n    except OSError as e:\\n        return {'seen': 'refused: ' + str(e)}\\n"
res = sandbox.run(JOB, "test_os_layers:run_body", {"pid": me}, sandbox.RULE_POLICY, sandbox.Limits(timeout_s=60, static_check=False))
print(json.dumps({"control": control, "ok": res.ok, "why": f"{res.reason}: {res.exception} {res.stderr_tail[-1500:]}",
                  "seen": (res.value or {}).get("seen", ""), "layers": res.layers}))
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to uid 65534 to be a non-root caller")
def test_a_same_uid_job_without_a_pid_namespace_cannot_read_the_callers_environment():
    canary = "sk-caller-canary-" + secrets.token_hex(8)
    env = {**os.environ, "OPTFORGE_TEST_API_KEY": canary, "OPTFORGE_SANDBOX_DISABLE": "namespaces,privileges",
           "PYTHONDONTWRITEBYTECODE": "1"}
    here = os.path.dirname(os.path.abspath(__file__))
    paths = ":".join(import_locations(["optforge"]) + [here])
    out = subprocess.run([sys.executable, "-c", LAUNCH_AS, str(NOBODY), paths, CALLER.replace("HERE", repr(here))], capture_output=True,
                         text=True, timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert canary in report["control"], report  # a same-uid process can read it before the first sandbox call
    assert report["ok"], report["why"]
    assert not report["layers"]["pid_namespace"], report["layers"]  # it could name the caller's pid
    assert canary not in report["seen"] and "refused" in report["seen"], report
