"""ATTACK (fixed): with the uid switch off (`OPTFORGE_SANDBOX_DISABLE=privileges`) and run as root, a
procedure that got past the checker and the builtins table ran as uid 0 in its own PID namespace:
`processes_isolated` held (its own /proc), so it was not refused, but with every capability dropped it
was still the *owner* of root's files, and the owner needs no capability to read a 0600 file. It read
the user's secrets on disk (here a 0600 file in a 0700 directory under /root; in life ~/.netrc,
~/.config/..., a .env with the LLM API key): the mounts are read-only, not hidden (the tmpfs over
root-only directories comes with the uid switch). The layers said `unprivileged: false`, and the run
went ahead. Fixed: the procedure process refuses (`isolation`) when it would run as the host's root, as
it refuses when it would share the user's uid and PID namespace, before it reads the start message
that carries the source."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sandbox"))
from procedure_helpers import source  # noqa: E402
from test_procedure_environ import OPEN_HOST  # noqa: E402

READER = source('''
    def improve(population, utility, llm, task):
        try:
            with open(task) as f:
                return {"source": "read: " + f.read(), "idea": "root's files"}
        except OSError as e:
            return {"source": "refused: " + str(e), "idea": "root's files"}
''')

BROKER = source('''
    import json, sys
    from optforge.sandbox.procedure import ProcedureEnd, ProcedureLimits, ProcedureRun
    open_host, reader, path = json.loads(sys.stdin.read())
    run = ProcedureRun("files", ProcedureLimits(cpu_s=10, wall_s=120))
    run._launch({"kind": "start", "source": reader, "population": [], "task": path, "seed": 0}, host_args=("-c", open_host))
    end = None
    while not isinstance(end, ProcedureEnd):
        end = run.poll(timeout=1.0)
    print(json.dumps({"status": end.status, "failure": end.failure, "reason": end.reason, "value": end.value,
                      "layers": end.layers}))
''')


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch exists only for root")
def test_a_procedure_without_the_uid_switch_cannot_read_roots_private_files():
    home = tempfile.mkdtemp(prefix="optforge-attack-", dir="/root")  # 0700, root's
    try:
        path = os.path.join(home, "api-key")
        canary = "sk-file-canary-" + secrets.token_hex(8)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(canary)
        env = {**os.environ, "OPTFORGE_SANDBOX_DISABLE": "privileges"}
        out = subprocess.run([sys.executable, "-c", BROKER], input=json.dumps([OPEN_HOST, READER, path]),
                             capture_output=True, text=True, timeout=300, cwd="/", env=env)
        assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert canary not in json.dumps(report["value"]), report
        # not started: as root, nothing but the uid switch would hide those files
        assert report["failure"] == "isolation" and report["value"] is None, report
        assert report["layers"]["processes_isolated"] and not report["layers"]["unprivileged"], report
        assert "root" in report["reason"] and "privileges" in report["reason"], report
    finally:
        shutil.rmtree(home)
