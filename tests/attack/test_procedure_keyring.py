"""ATTACK (failed on main; fixed on branch `attack`): a procedure that got past the checker and the builtins table reads a secret the
broker holds in its session keyring (`keyctl add user ... @s`, where a user or a tool such as a
keyutils-backed credential store keeps an API key). The session keyring is inherited by every process
the broker starts; neither the PID, mount, IPC or network namespace nor the uid switch changes which
keyring a process possesses, and possession gives its possessor permissions (read included).

Set-up as tests/sandbox/test_procedure_environ.py: a real broker process (here with a fresh session
keyring of its own holding the canary), its procedure in a host with the checker and builtins off. A
plain child of the broker reads the canary (the control)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sandbox"))
from procedure_helpers import source  # noqa: E402
from test_procedure_environ import OPEN_HOST  # noqa: E402

KEYRING = source('''
    import ctypes
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long

    def find(desc):
        key = lib.syscall(250, 10, ctypes.c_int(-3), b"user", desc.encode(), 0)  # KEYCTL_SEARCH @s
        if key < 0:
            return "search refused: errno " + str(ctypes.get_errno())
        buf = ctypes.create_string_buffer(4096)
        n = lib.syscall(250, 11, ctypes.c_long(key), buf, 4096)  # KEYCTL_READ
        return buf.raw[:n].decode() if n >= 0 else "read refused: errno " + str(ctypes.get_errno())
''')

READER = KEYRING + source('''

    def improve(population, utility, llm, task):
        return {"source": find("optforge-test-api-key"), "idea": "read the broker's session keyring"}
''')

BROKER = KEYRING + source('''

    import json, os, subprocess, sys
    from optforge.sandbox.procedure import ProcedureEnd, ProcedureLimits, ProcedureRun
    open_host, reader, canary = json.loads(sys.stdin.read())
    assert lib.syscall(250, 1, 0) > 0  # KEYCTL_JOIN_SESSION_KEYRING(NULL): a fresh session keyring, ours
    assert lib.syscall(248, b"user", b"optforge-test-api-key", canary.encode(), len(canary), ctypes.c_int(-3)) > 0
    control = subprocess.run([sys.executable, "-c", sys.argv[1] + "\\nprint(find('optforge-test-api-key'))"],
                             capture_output=True, text=True).stdout
    run = ProcedureRun("keyring", ProcedureLimits(cpu_s=10, wall_s=120))
    run._launch({"kind": "start", "source": reader, "population": [], "task": "", "seed": 0}, host_args=("-c", open_host))
    end = None
    while not isinstance(end, ProcedureEnd):
        end = run.poll(timeout=1.0)
    print(json.dumps({"control": control, "status": end.status, "failure": end.failure, "reason": end.reason,
                      "value": end.value, "layers": end.layers}))
''')


@pytest.mark.parametrize("disable", [""], ids=["all-layers"])
def test_a_procedure_cannot_read_the_brokers_session_keyring(disable):
    canary = "sk-canary-" + secrets.token_hex(8)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    if disable:
        env["OPTFORGE_SANDBOX_DISABLE"] = disable
    out = subprocess.run([sys.executable, "-c", BROKER, KEYRING], input=json.dumps([OPEN_HOST, READER, canary]),
                         capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert canary in report["control"], report  # the broker's own child reads it: the reading code works
    assert report["status"] == "ok" and report["layers"]["processes_isolated"], report
    assert canary not in json.dumps(report["value"]), report
