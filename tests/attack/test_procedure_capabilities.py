"""ATTACK (fixed): a procedure started by a non-root user kept every capability of its user namespace.

Inside the procedure's user namespace `geteuid()` is 0, so the process tried the root-only switch to
a fresh uid; that uid is unmapped there, the switch failed, and the capabilities were then never
dropped. With the checker and builtins off (`OPEN_HOST`), the procedure could remount `/` read-write
and unmount the tmpfs that hides the host's `/tmp` and `/run`, and then write the user's own files.
Now the uid switch is tried only as root on the host, capabilities are always dropped, and a
procedure left with any is refused (`isolation`)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sandbox"))
from procedure_helpers import source  # noqa: E402
from test_procedure_environ import OPEN_HOST, run_as  # noqa: E402

USER = 4242

UNDOER = source('''
    def improve(population, utility, llm, task):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
        done = []
        for name, r in (("remount / rw", libc.mount(None, b"/", None, 0x20 | 0x1000, None)),
                        ("umount /tmp", libc.umount2(b"/tmp", 2)), ("umount /run", libc.umount2(b"/run", 2))):
            done.append(name + (": ok" if r == 0 else ": errno %d" % ctypes.get_errno()))
        return {"source": "CapEff " + caps + " | " + " | ".join(done), "idea": "capabilities"}
''')

BROKER = source('''
    import json, sys
    from optforge.sandbox.procedure import ProcedureEnd, ProcedureLimits, ProcedureRun
    open_host, undoer = json.loads(sys.stdin.read())
    run = ProcedureRun("caps", ProcedureLimits(cpu_s=10, wall_s=120))
    run._launch({"kind": "start", "source": undoer, "population": [], "task": "", "seed": 0}, host_args=("-c", open_host))
    end = None
    while not isinstance(end, ProcedureEnd):
        end = run.poll(timeout=1.0)
    print(json.dumps({"status": end.status, "failure": end.failure, "value": end.value, "layers": end.layers}))
''')


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the broker as another (non-root) uid, which needs root")
def test_a_non_root_users_procedure_has_no_capability_left():
    report = run_as(USER, BROKER, json.dumps([OPEN_HOST, UNDOER]))
    if report["failure"] == "isolation":  # no user namespaces here: refused, which holds too
        return
    assert report["status"] == "ok" and report["layers"]["no_capabilities"], report
    text = report["value"]["source"]
    assert text.startswith("CapEff 0000000000000000"), text
    assert "ok" not in text.replace("CapEff", ""), text  # every undo attempt failed
