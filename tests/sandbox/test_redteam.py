"""The red-team table (issue 4): each hostile candidate ends with the stated reason, in bounded time,
leaving no process and no file behind, and a normal candidate works right after it."""

from __future__ import annotations

import os
import tempfile
import shutil
import random
import socket
import subprocess
import time
import uuid

import pytest
from sandbox_helpers import processes_with_arg, redteam, wait_no_processes

from optforge import sandbox
from optforge.sandbox import transport
from optforge.types import Status

RULE_JOB = "sandbox_jobs:rule_job"
EXEC_JOB = "sandbox_jobs:exec_job"
TIMEOUT = 2.0

# name, reason with the static check on (rule job), reason with it off (plain exec job; None = not run)
TABLE = [
    ("infinite_loop", "timeout", None),
    ("sleep", "rejected", "timeout"),
    ("memory_bomb", "memory", None),
    ("fork_bomb", "rejected", "timeout"),
    ("read_secret", "rejected", "ok"),
    ("socket_connect", "rejected", "exception"),
    ("write_parent_cwd", "rejected", "exception"),
    ("kill_parent", "rejected", "any"),
    ("setsid_grandchild", "rejected", "ok"),
    ("ctypes_segfault", "rejected", "signal:11"),
    ("raise_exception", "exception", None),
    ("print_flood", "ok", None),
    ("ignore_sigterm", "rejected", "timeout"),
]
# layers a row needs to be contained when the static check is off
NEEDS = {
    "fork_bomb": ("pid_namespace",),
    "read_secret": ("pid_namespace", "unprivileged"),
    "socket_connect": ("network",),
    "write_parent_cwd": ("filesystem",),
    "kill_parent": ("pid_namespace",),
    "setsid_grandchild": ("pid_namespace",),
}
CASES = [(name, True, on) for name, on, _ in TABLE] + [(name, False, off) for name, _, off in TABLE if off]


def _limits(static: bool, **kw) -> sandbox.Limits:
    kw.setdefault("timeout_s", TIMEOUT)
    kw.setdefault("memory_mb", 1536)
    return sandbox.Limits(static_check=static, **kw)


@pytest.fixture
def own_cwd(monkeypatch):
    """A fresh directory inside the caller's working directory, as the cwd: the test looks for
    anything new in it, and a shared cwd (such as /tmp) gets entries from other processes."""
    d = tempfile.mkdtemp(prefix=".redteam-cwd-", dir=os.getcwd())
    monkeypatch.chdir(d)
    yield d
    monkeypatch.undo()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name,static,expect", CASES, ids=[f"{n}-{'static' if s else 'nostatic'}" for n, s, _ in CASES])
def test_redteam_row(name, static, expect, adamw_source, tmp_path, layers_here, own_cwd):
    missing = [layer for layer in NEEDS.get(name, ()) if not static and not layers_here.get(layer)]
    if missing:
        pytest.skip(f"this machine gives no {', '.join(missing)} layer (see `optforge doctor`)")
    secret = f"sk-redteam-{uuid.uuid4().hex}"
    token = f"{random.randint(100000, 999999)}.{random.randint(1, 9)}"
    target = os.path.join(os.getcwd(), f"redteam-escape-{uuid.uuid4().hex[:8]}.txt")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    consts = {
        "socket_connect": {"PORT": listener.getsockname()[1]},
        "write_parent_cwd": {"TARGET": target},
        "setsid_grandchild": {"TOKEN": token},
    }.get(name, {})
    source = redteam(name, **consts)
    # a process holding the secret in its environment, as the engine would
    holder = subprocess.Popen(["sleep", "60"], env={**os.environ, "OPENAI_API_KEY": secret})
    os.environ["OPENAI_API_KEY"] = secret
    cwd_before = set(os.listdir("."))
    t0 = time.monotonic()
    try:
        extra = {"timeout_s": 15.0, "memory_mb": 1024} if name == "memory_bomb" else {}
        extra = {"timeout_s": 15.0} if name == "print_flood" else extra
        res = sandbox.run(source, RULE_JOB if static else EXEC_JOB, {"steps": 2}, sandbox.RULE_POLICY, _limits(static, **extra))
    finally:
        elapsed = time.monotonic() - t0
        del os.environ["OPENAI_API_KEY"]
        holder.kill()
        holder.wait()
    try:
        conn, _ = listener.accept()
        conn.close()
        connected = True
    except OSError:
        connected = False
    listener.close()
    escaped = os.path.exists(target)
    if escaped:
        os.remove(target)

    # the stated ending, with a reason
    if expect != "any":
        assert res.reason == expect, (res.reason, res.exception, res.stderr_tail[-500:])
    assert res.status is sandbox_status(res.reason)
    if res.reason != "ok":
        assert res.exception, "a failure must say why"
    assert elapsed < res_limit(name) + 15, f"took {elapsed:.1f}s"
    # nothing left behind, nothing got out
    assert wait_no_processes(res.uid) == [], "job processes outlived the job"
    assert processes_with_arg(token) == [], "the setsid grandchild survived"
    assert not escaped, "the candidate wrote into the parent's working directory"
    assert set(os.listdir(".")) - cwd_before == set()
    assert not connected, "the candidate reached a socket on the host"
    blob = res.stdout_tail + res.stderr_tail + str(res.value) + str(res.exception)
    assert secret not in blob, "the candidate saw the parent's API key"
    # row-specific facts
    if expect == "rejected":
        assert "line" in res.exception and res.wall_s < 1.0
    if name == "raise_exception":
        assert "line 13" in res.exception and "boom" in res.exception
    if name == "print_flood":
        assert len(res.stdout_tail) < 9000 and "dropped" in res.stdout_tail
    if name == "memory_bomb":
        assert res.status is Status.MEMORY
    if static is False and name == "read_secret":
        assert "env: absent" in res.stdout_tail
    # the machinery survives: the caller, the template, and a normal candidate right after
    if transport.TEMPLATE.pid is not None:
        os.kill(transport.TEMPLATE.pid, 0)
    ok = sandbox.run(adamw_source, RULE_JOB, {"steps": 2}, sandbox.RULE_POLICY, _limits(True))
    assert ok.ok, (ok.reason, ok.exception)


def res_limit(name: str) -> float:
    return 15.0 if name in ("memory_bomb", "print_flood") else TIMEOUT


def sandbox_status(reason: str):
    from optforge.types import status_for_reason

    return status_for_reason(reason)


@pytest.mark.parametrize("name", ["setsid_grandchild", pytest.param("fork_bomb", marks=pytest.mark.slow)])
def test_cold_spawn_holds_too(name, layers_here):
    if not layers_here.get("pid_namespace"):
        pytest.skip("this machine gives no pid_namespace layer (see `optforge doctor`)")
    token = f"{random.randint(100000, 999999)}.{random.randint(1, 9)}"
    source = redteam(name, **({"TOKEN": token} if name == "setsid_grandchild" else {}))
    t0 = time.monotonic()
    res = sandbox.run(source, EXEC_JOB, {"steps": 1}, sandbox.RULE_POLICY, _limits(False, mode="cold"))
    assert res.mode == "cold"
    assert res.reason == ("ok" if name == "setsid_grandchild" else "timeout"), (res.reason, res.exception)
    assert time.monotonic() - t0 < TIMEOUT + 60
    assert wait_no_processes(res.uid) == []
    assert processes_with_arg(token) == []


def test_timeout_kills_even_when_sigterm_ignored():
    """The supervisor sends SIGKILL to the namespace, so a SIGTERM handler buys nothing."""
    res = sandbox.run(redteam("ignore_sigterm"), EXEC_JOB, {}, sandbox.RULE_POLICY, _limits(False, timeout_s=1.0))
    assert res.status is Status.TIMEOUT and res.wall_s < 5
    assert wait_no_processes(res.uid) == []
