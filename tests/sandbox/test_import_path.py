"""Every interpreter the sandbox starts (warm template, cold worker, procedure host) gets the caller's
import path with the standard library first (`optforge.sandbox.boot`).

It used to get the caller's whole `sys.path` as PYTHONPATH, whose entries precede the standard
library from the interpreter's first import: a caller started with `python -m optforge` from a
directory holding a `re.py` or `types.py` (a researcher's scratch directory) had every job die at
interpreter start, and every evaluation end `worker_lost`. The caller's own modules in that directory
(a user suite `mysuite:suite`, a job module) must still import in the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHADOWED = ("re", "types")  # standard modules every interpreter imports at start

CWD_JOB = '''
import random, re, types

def body(source, payload):
    return {name: m.__file__ for name, m in (("random", random), ("re", re), ("types", types))}
'''

CALLER = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from optforge import sandbox
    from optforge.sandbox.procedure import ProcedureLimits, ProcedureSandbox
    from procedure_helpers import drive

    out = {}
    for mode in ("warm", "cold"):
        res = sandbox.run("x = 1\\n", "cwd_job:body", {}, sandbox.RULE_POLICY, sandbox.Limits(timeout_s=60, mode=mode))
        out[mode] = {"ok": res.ok, "value": res.value, "why": f"{res.reason}: {res.exception} {res.stderr_tail[-1500:]}"}
    run = ProcedureSandbox(ProcedureLimits(cpu_s=20, wall_s=60)).start(
        "import re\\n\\ndef improve(population, utility, llm, task):\\n    return re.sub('a', 'b', 'rule a')\\n",
        population=[], task="t", seed=0)
    end, _ = drive(run)
    out["procedure"] = {"status": end.status, "value": end.value, "reason": end.reason}
    print(json.dumps(out))
''')


@pytest.fixture
def shadowing_dir(tmp_path):
    """A working directory whose `re.py` and `types.py` raise when imported. Readable by others, as a
    project directory is: a job under a uid of its own cannot import from a 0700 directory (pytest
    makes them so), whose ancestors alone can be exposed (`mounts.expose_paths`)."""
    tmp_path.chmod(0o755)
    for name in SHADOWED:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the {name}.py of the working directory was imported')\n")
    return tmp_path


def test_optforge_eval_runs_from_a_directory_that_shadows_the_standard_library(shadowing_dir):
    p = subprocess.run([sys.executable, "-m", "optforge", "eval", "adamw", "--suite", "smoke"], cwd=shadowing_dir,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "status ok" in p.stdout, (p.stdout[-3000:], p.stderr[-3000:])


def test_jobs_and_procedures_import_the_callers_modules_but_never_over_the_standard_library(shadowing_dir):
    (shadowing_dir / "cwd_job.py").write_text(CWD_JOB)
    p = subprocess.run([sys.executable, "-c", CALLER, HERE], cwd=shadowing_dir, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for mode in ("warm", "cold"):
        assert out[mode]["ok"], out[mode]["why"]
        # the job module came from the caller's working directory, the standard modules did not
        assert all(not f.startswith(str(shadowing_dir)) for f in out[mode]["value"].values()), out[mode]
    assert out["procedure"]["status"] == "ok" and out["procedure"]["value"]["source"] == "rule b", out["procedure"]


def test_the_standard_library_comes_first_and_the_callers_order_stays(monkeypatch, tmp_path):
    from optforge.sandbox import transport

    stdlib = os.path.dirname(os.__file__)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), stdlib, os.path.join(stdlib, "no-such-dir")])
    monkeypatch.chdir(tmp_path / "..")
    assert transport.import_path() == [stdlib, os.path.abspath(str(tmp_path / "..")), str(tmp_path)]
