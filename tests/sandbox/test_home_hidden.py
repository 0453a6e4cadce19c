"""The `home_hidden` layer: a caller without root runs its jobs, rule processes and procedures under its
own uid outside their user namespace, so before this layer a rule or a procedure past the checker read
the caller's 0600 files (~/.netrc, ~/.ssh/id_*, API keys under ~/.config). Now the caller's home is an
empty tmpfs in their mount namespace, with the import locations under it (a venv, a user suite) bound
back read-only.

Each case starts a real caller as a non-root uid (`LAUNCH_AS`, so the test must run as root) with a
HOME of its own outside the private /tmp: a 0600 secret, a module on the caller's sys.path under it,
and TMPDIR under it too (the job's directory then lies in the hidden home and must stay writable). A
hostile rule (through `optforge.evaluators.job:run_job`, checker off) and a hostile procedure (checker
and builtins off, `OPEN_HOST`) read the secret and import the module. With `home_hidden` switched off
alone (OPTFORGE_SANDBOX_DISABLE) the same code reads the secret: the layer is what holds.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest
from procedure_helpers import source
from test_procedure_environ import LAUNCH_AS, OPEN_HOST

from optforge.sandbox import layers as L
from optforge.sandbox.import_locations import import_locations

USER = 4246  # the non-root caller; no password entry, so its home is $HOME alone
HOMES_BASE = "/home"  # outside /tmp, /var/tmp and /dev/shm, whose private tmpfs would hide it anyway

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="starts the caller as another (non-root) uid, which needs root")

RULE = source('''
    import torch
    LR = 1e-3

    def init(p, ctx):
        import os, homemod
        facts = {"import": homemod.VALUE, "home": sorted(os.listdir(HOME))}
        try:
            facts["secret"] = open(os.path.join(HOME, ".netrc")).read()
        except OSError as e:
            facts["secret"] = e.strerror
        raise RuntimeError(repr(facts))

    def update(p, g, state, ctx):
        return -ctx.lr * g
''')

JOB_CALLER = source('''
    import json, os, sys
    sys.path.insert(0, os.path.join(os.environ["HOME"], "suite"))
    from optforge import sandbox
    runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
    res = sandbox.run(sys.stdin.read(), "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs},
                      sandbox.RULE_POLICY, sandbox.Limits(timeout_s=120, static_check=False))
    value = res.value if res.ok else None
    print(json.dumps({"ok": res.ok, "reason": res.reason, "layers": res.layers,
                      "facts": value["failure"]["message"] if value and value.get("failure") else None,
                      "rule_layers": value.get("rule_layers") if value else None, "stderr": res.stderr_tail[-2000:]}))
''')

PROCEDURE = source('''
    def improve(population, utility, llm, task):
        import os, homemod
        facts = {"import": homemod.VALUE, "home": sorted(os.listdir(task))}
        try:
            facts["secret"] = open(os.path.join(task, ".netrc")).read()
        except OSError as e:
            facts["secret"] = e.strerror
        return {"source": repr(facts), "idea": "read the caller's home"}
''')

PROCEDURE_CALLER = source('''
    import json, os, sys
    sys.path.insert(0, os.path.join(os.environ["HOME"], "suite"))
    from optforge.sandbox.procedure import ProcedureEnd, ProcedureLimits, ProcedureRun
    open_host, procedure = json.loads(sys.stdin.read())
    run = ProcedureRun("home", ProcedureLimits(cpu_s=10, wall_s=120))
    run._launch({"kind": "start", "source": procedure, "population": [], "task": os.environ["HOME"], "seed": 0},
                host_args=("-c", open_host))
    end = None
    while not isinstance(end, ProcedureEnd):
        end = run.poll(timeout=1.0)
    print(json.dumps({"ok": end.status == "ok", "reason": end.reason, "layers": end.layers,
                      "facts": end.value["source"] if end.value else None}))
''')


@pytest.fixture
def caller_home():
    """A home of USER's own (0700) under /home: a 0600 .netrc holding a fresh secret, a `suite`
    directory with `homemod.py` (put on the caller's sys.path), and `tmp` (the caller's TMPDIR)."""
    if not os.path.isdir(HOMES_BASE):
        pytest.skip(f"no {HOMES_BASE} here to make a home in")
    home = tempfile.mkdtemp(prefix="optforge-home-test-", dir=HOMES_BASE)
    secret = "machine api.example.com password " + secrets.token_hex(8)
    try:
        os.makedirs(os.path.join(home, "suite"))
        os.makedirs(os.path.join(home, "tmp"))
        with open(os.path.join(home, "suite", "homemod.py"), "w") as f:
            f.write("VALUE = 42\n")
        with open(os.path.join(home, ".netrc"), "w") as f:
            f.write(secret)
        os.chmod(os.path.join(home, ".netrc"), 0o600)
        for here, dirs, files in os.walk(home):
            for name in [here, *(os.path.join(here, n) for n in dirs + files)]:
                os.chown(name, USER, USER)
        os.chmod(home, 0o700)
        yield home, secret
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _call_as_user(caller: str, stdin: list[str] | str, home: str, disable: str) -> dict:
    """Run `caller` as USER with HOME and TMPDIR in `home`; the JSON it prints last."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": home, "TMPDIR": os.path.join(home, "tmp")}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    if disable:
        env["OPTFORGE_SANDBOX_DISABLE"] = disable
    paths = ":".join(import_locations(["optforge"]) + [os.path.dirname(sys.executable)])
    out = subprocess.run([sys.executable, "-c", LAUNCH_AS, str(USER), paths, caller],
                         input=stdin if isinstance(stdin, str) else json.dumps(stdin),
                         capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _need_user_namespaces(report: dict) -> None:
    if not report["layers"].get("pid_namespace"):
        pytest.skip("no user namespaces for a non-root caller here")


def _assert_home(report: dict, secret: str, with_layer: bool, shown: str) -> None:
    """What the caller's code found: the suite under the home always imports; with the layer, the secret
    is not there and the home lists only `shown`; without it, the secret is read."""
    _need_user_namespaces(report)
    assert report["ok"] and report["facts"], report
    facts = report["facts"]
    assert "'import': 42" in facts, facts
    if with_layer:
        assert "'secret': 'No such file or directory'" in facts and secret not in facts, facts
        assert f"'home': {shown}" in facts, facts
    else:
        assert secret in facts and "'.netrc'" in facts, facts
    assert report["layers"]["home_hidden"] is with_layer, report["layers"]


@as_root
@pytest.mark.parametrize("with_layer", [True, False], ids=["home-hidden", "control-layer-off"])
def test_a_non_root_callers_rule_cannot_read_its_home(caller_home, with_layer):
    home, secret = caller_home
    report = _call_as_user(JOB_CALLER, RULE.replace("HOME", repr(home)), home, "" if with_layer else "home_hidden")
    # with the layer, nothing but what was bound back: the suite (read-only) and the job's directory under TMPDIR
    _assert_home(report, secret, with_layer, "['suite', 'tmp']")


@as_root
@pytest.mark.parametrize("with_layer", [True, False], ids=["home-hidden", "control-layer-off"])
def test_a_non_root_callers_procedure_cannot_read_its_home(caller_home, with_layer):
    home, secret = caller_home
    report = _call_as_user(PROCEDURE_CALLER, [OPEN_HOST, PROCEDURE], home, "" if with_layer else "home_hidden")
    if report["reason"] and "not started" in report["reason"]:
        pytest.skip("no user namespaces for a non-root caller here: the procedure is refused")
    _assert_home(report, secret, with_layer, "['suite']")


def test_no_home_to_hide_is_not_a_layer(monkeypatch, tmp_path):
    """"/" (a service user's home) and a home that does not exist are left out: nothing is mounted and
    the layer is reported inactive rather than held."""
    assert L.hide_home(["/", str(tmp_path / "missing")]) is False
    monkeypatch.setenv("HOME", "/")
    assert "/" not in L.caller_homes()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert str(tmp_path.resolve()) in L.caller_homes()
