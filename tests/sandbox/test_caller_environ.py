"""A job cannot read the environment of the process that started it (the evaluator, which may hold
OPENAI_API_KEY and the like), even where it runs under the caller's own uid without a PID namespace
of its own (a non-root caller on a machine without user namespaces; here OPTFORGE_SANDBOX_DISABLE=
namespaces,privileges run as uid 65534). There `/proc/<caller>/environ` passes the kernel's uid check;
what stops it is the caller being non-dumpable (`layers.undumpable`, called by `sandbox.run`).

A real caller process runs as uid 65534 with a canary in its environment. Before its first sandbox
call a plain child of the same uid reads the canary (the reading code works); then a job, checker
off, reads `/proc/<caller pid>/environ`. Before the fix the job returned the canary. The second test
does the same with a training job's rule process on a machine without user namespaces, where the rule
host can give it no PID namespace either.
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


# As root: run CODE as a non-root user (uid 1000 inside, 65534 outside) in a user namespace where no further
# user namespace can be made: a machine without unprivileged user namespaces, as the sandbox sees it (no PID,
# network or mount namespace for the job; no user or PID namespace for the rule host and its rule processes).
# The interpreter and optforge are exposed to that uid in a mount namespace of its own, as in LAUNCH_AS.
NO_USERNS = '''
import ctypes, os, sys
paths, code = sys.argv[1].split(":"), sys.argv[2]

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

go_r, go_w = os.pipe()
mapped_r, mapped_w = os.pipe()
pid = os.fork()
if pid:  # root outside writes the child's id maps (uid 0 kept so that it can still build its mounts)
    os.read(go_r, 1)
    write(f"/proc/{pid}/uid_map", "0 0 1\\n1000 65534 1")
    write(f"/proc/{pid}/setgroups", "deny")
    write(f"/proc/{pid}/gid_map", "0 0 1\\n1000 65534 1")
    os.write(mapped_w, b"x")
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(ctypes.c_int(0x10000000 | 0x00020000)) == 0, ctypes.get_errno()  # before optforge starts threads
os.write(go_w, b"x")
os.read(mapped_r, 1)
write("/proc/sys/user/max_user_namespaces", "0")
from optforge.sandbox import layers as L
assert L._mount(None, "/", None, L.MS_REC | L.MS_PRIVATE) and L.expose_paths(paths, 1000) == []
os.setresgid(1000, 1000, 1000)
os.setresuid(1000, 1000, 1000)
os.execv(sys.executable, [sys.executable, "-c", code])
'''

RULE_CALLER = '''
import json, os, subprocess, sys
from optforge import sandbox
me = str(os.getpid())
control = subprocess.run([sys.executable, "-c", "import sys; print(open('/proc/' + sys.argv[1] + '/environ', 'rb').read())", me],
                         capture_output=True, text=True).stdout
RULE = (
    "import torch\\nLR = 1e-3\\n"
    "def init(p, ctx):\\n"
    "    try:\\n"
    "        seen = open('/proc/PID/environ', 'rb').read().decode('latin-1')\\n"
    "    except OSError as e:\\n"
    "        seen = 'refused: ' + str(e)\\n"
    "    raise RuntimeError(seen)\\n"
    "def update(p, g, state, ctx):\\n"
    "    return -ctx.lr * g\\n"
).replace("PID", me)
runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
res = sandbox.run(RULE, "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs}, sandbox.RULE_POLICY,
                  sandbox.Limits(timeout_s=120, static_check=False))
value = res.value or {}
print(json.dumps({"control": control, "ok": res.ok, "why": f"{res.reason}: {res.exception} {res.stderr_tail[-1500:]}",
                  "layers": res.layers, "rule_layers": value.get("rule_layers", {}),
                  "seen": (value.get("failure") or {}).get("message", "")}))
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="builds a machine without user namespaces for a non-root uid")
def test_a_rule_process_without_a_pid_namespace_cannot_read_the_evaluators_environment():
    """A training job's rule, checker off, on a machine without user namespaces: its rule process shares
    the evaluator's uid and PID namespace and reads `/proc/<evaluator>/environ`. Before the fix it read
    the canary (checked by hand, with `undumpable` patched out); now `EACCES`."""
    canary = "sk-evaluator-canary-" + secrets.token_hex(8)
    env = {**os.environ, "OPTFORGE_TEST_API_KEY": canary, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    paths = ":".join(import_locations(["optforge"]) + [os.path.dirname(sys.executable)])
    out = subprocess.run([sys.executable, "-c", NO_USERNS, paths, RULE_CALLER], capture_output=True, text=True,
                         timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert canary in report["control"], report  # the same uid outside the sandbox can read it
    assert report["ok"], report["why"]
    # the precondition: no PID namespace anywhere, so the rule process can name the evaluator
    assert not report["layers"]["pid_namespace"] and not report["rule_layers"]["pid_namespace"], report
    assert canary not in report["seen"] and report["seen"].startswith("refused:"), report
