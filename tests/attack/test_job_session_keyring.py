"""ATTACK (failed on main; fixed on branch `attack`): a sandbox job (checker off; the candidate runs in the
job process itself, `sandbox_jobs:exec_job` of tests/sandbox) possessed the caller's session keyring and read a secret kept there (`keyctl add user ... @s`). The caller is a
subprocess that joins a session keyring of its own first, as a login session (pam_keyinit) gives one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from test_probe_keyring import COMMON  # noqa: E402

READER = COMMON + '''
def init(p, ctx):
    raise RuntimeError("found: " + str(_find(-3)))

def update(p, g, state, ctx):
    return -ctx.lr * g
'''

CALLER = '''
import ctypes, json, secrets, sys
sys.path.insert(0, sys.argv[1])
from optforge import sandbox
lib = ctypes.CDLL(None, use_errno=True)
lib.syscall.restype = ctypes.c_long
canary = "sk-canary-" + secrets.token_hex(8)
assert lib.syscall(250, 1, 0) > 0  # KEYCTL_JOIN_SESSION_KEYRING(NULL)
assert lib.syscall(248, b"user", b"optforge-leak", canary.encode(), len(canary), ctypes.c_int(-3)) > 0
res = sandbox.run(sys.stdin.read(), "sandbox_jobs:exec_job", {}, sandbox.RULE_POLICY,
                  sandbox.Limits(timeout_s=120.0, static_check=False))
print(json.dumps({"canary": canary, "value": str(res.exception)}))
'''


def test_a_job_does_not_possess_the_callers_session_keyring():
    out = subprocess.run([sys.executable, "-c", CALLER, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sandbox")], input=READER, capture_output=True, text=True, timeout=300,
                         cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "found: " in json.dumps(report["value"]), report  # the reader ran
    assert report["canary"] not in json.dumps(report["value"]), report
