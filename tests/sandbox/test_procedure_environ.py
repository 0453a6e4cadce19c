"""A procedure that got past the checker cannot read the broker's environment (where the user's LLM API
key lives) nor signal the broker, in every mode the sandbox runs in (issue 20 finding).

Without namespaces and without the uid switch (OPTFORGE_SANDBOX_DISABLE=namespaces,privileges, as on a
machine without user namespaces) the procedure process would share the broker's uid and /proc: as a
non-root uid it could read `/proc/<broker>/environ`, and as any uid signal the broker. The sandbox
refuses to start a procedure there (`isolation`), before the procedure is even read. With namespaces
off but the uid switch on (root), the procedure runs under a uid of its own, or is refused where that
uid could not read the interpreter.

Each case starts a real broker process with a canary secret in its environment; its procedure runs in
a host whose checker and builtins table are switched off (a procedure that found a way past both), reads
`/proc/<broker pid>/environ` and tries `kill(broker, 0)`. When the test runs as root, each case runs a
second time as uid 65534 (nobody), the uid that can read a same-uid broker's environ. A plain child of
the broker, outside the sandbox, reads the canary: the reading code works, and the sandbox is what
stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from procedure_helpers import source

from optforge.sandbox.import_locations import import_locations

NOBODY = 65534

# the host of a procedure that got past everything the checker and the builtins table enforce
OPEN_HOST = source('''
    import builtins, sys
    from optforge.sandbox import procedure_exec
    procedure_exec.check_procedure = lambda source: []
    procedure_exec._procedure_builtins = lambda: dict(vars(builtins))
    from optforge.sandbox import procedure_host
    procedure_host.main(sys.argv[1:])
''')

READER = source('''
    import os

    def improve(population, utility, llm, task):
        seen = []
        try:
            with open("/proc/" + task + "/environ", "rb") as f:
                seen.append("environ: " + f.read().decode("latin-1").replace("\\0", " "))
        except OSError as e:
            seen.append("environ refused: " + str(e))
        try:
            os.kill(int(task), 0)
            seen.append("signal: reached the broker")
        except OSError as e:
            seen.append("signal refused: " + str(e))
        return {"source": " | ".join(seen), "idea": "read the broker"}
''')

BROKER = source('''
    import json, os, subprocess, sys
    from optforge.sandbox.procedure import ProcedureEnd, ProcedureLimits, ProcedureRun
    open_host, reader = json.loads(sys.stdin.read())
    me = str(os.getpid())
    # outside the sandbox, a child of the same uid reads the canary: the sandbox is what must stop it
    control = subprocess.run([sys.executable, "-c", "import sys; print(open('/proc/' + sys.argv[1] + '/environ', 'rb').read())", me],
                             capture_output=True, text=True).stdout
    run = ProcedureRun("environ", ProcedureLimits(cpu_s=10, wall_s=120))
    run._launch({"kind": "start", "source": reader, "population": [], "task": me, "seed": 0}, host_args=("-c", open_host))
    end = None
    while not isinstance(end, ProcedureEnd):
        end = run.poll(timeout=1.0)
    print(json.dumps({"uid": os.geteuid(), "control": control, "status": end.status, "failure": end.failure,
                      "reason": end.reason, "value": end.value, "layers": end.layers}))
''')

LAUNCH_AS = source('''
    import ctypes, os, sys
    from optforge.sandbox import layers as L
    uid, paths = int(sys.argv[1]), sys.argv[2].split(":")
    # a mount namespace of our own where `uid` may read the interpreter and optforge (a 0700 /root holds pyenv here)
    assert L.libc().unshare(ctypes.c_int(L.CLONE_NEWNS)) == 0 and L._mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
    assert L.expose_paths(paths, uid) == [], "the interpreter or optforge stays unreadable to the test uid"
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[3]])
''')


def run_as(uid: int, script: str, stdin: str, extra_paths: tuple[str, ...] = ()) -> dict:
    """Run the Python `script` as the non-root `uid` through LAUNCH_AS (this process must be root), from
    /, with every sandbox layer on and `stdin` as its input; the JSON object its last line prints.
    `extra_paths` are made readable to `uid` besides optforge's import locations and the interpreter."""
    paths = ":".join(import_locations(["optforge"]) + [os.path.dirname(sys.executable), *extra_paths])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    out = subprocess.run([sys.executable, "-c", LAUNCH_AS, str(uid), paths, script], input=stdin,
                         capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _broker(disable: str, uid: int | None) -> tuple[dict, str]:
    """Run BROKER (as `uid` when given; this process must be root then); its report and its canary."""
    canary = "sk-canary-" + secrets.token_hex(8)
    env = {**os.environ, "OPTFORGE_TEST_API_KEY": canary, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    if disable:
        env["OPTFORGE_SANDBOX_DISABLE"] = disable
    if uid is None:
        argv = [sys.executable, "-c", BROKER]
    else:
        argv = [sys.executable, "-c", LAUNCH_AS, str(uid), ":".join(import_locations(["optforge"])), BROKER]
    out = subprocess.run(argv, input=json.dumps([OPEN_HOST, READER]), capture_output=True, text=True, timeout=300,
                         cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), canary


UIDS = [None] + ([NOBODY] if os.geteuid() == 0 else [])


@pytest.mark.parametrize("uid", UIDS, ids=lambda u: "this-uid" if u is None else "nobody")
@pytest.mark.parametrize("disable", ["", "namespaces", "namespaces,privileges"], ids=["all-layers", "uid-only", "degraded"])
def test_a_procedure_cannot_read_the_brokers_environment(disable, uid):
    report, canary = _broker(disable, uid)
    assert canary in report["control"], report  # a same-uid process outside the sandbox can read it
    shown = json.dumps({k: report[k] for k in ("reason", "value")})
    assert canary not in shown, report
    assert "reached the broker" not in shown, report
    if disable == "namespaces,privileges" or report["failure"] == "isolation":
        # no PID namespace and no uid of its own (without namespaces only root can switch the uid, where a
        # fresh uid can read the interpreter): refused before the procedure is read, saying what to do
        assert report["failure"] == "isolation" and not report["layers"]["processes_isolated"], report
        assert "user namespaces" in report["reason"] and "OPTFORGE_SANDBOX_DISABLE" in report["reason"], report
    else:
        assert report["status"] == "ok" and report["layers"]["processes_isolated"], report
        assert "environ refused" in report["value"]["source"] and "signal refused" in report["value"]["source"], report
