"""The OS layers of issue 15, each alone: a hostile job body runs through the real sandbox with the
static check off and the other three of these layers switched off (OPTFORGE_SANDBOX_DISABLE), and
the layer holds. The same body run with that layer switched off as well gets through, so each test
can fail: it is the layer, not the checker or a neighbouring layer, that stops it."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import random
import socket
import uuid

import pytest

from optforge import sandbox
from optforge.sandbox import runner
from optforge.types import Status

NEW_LAYERS = ("read_only_root", "run_hidden", "home_hidden", "ipc_namespace", "disk_quota")
IPC_CREAT = 0o1000
IPC_RMID = 0


def run_body(source: str, payload: dict) -> dict:
    """The job: execute the candidate as a plain module and return what its `body(payload)` returns
    (no rule loader, no import check: the candidate may do anything the process may)."""
    ns: dict = {"__name__": "candidate"}
    exec(compile(source, "<candidate>", "exec"), ns)
    return ns["body"](payload)


def run_alone(layer: str, source: str, payload: dict, monkeypatch, *, with_layer: bool = True, **limits) -> sandbox.SandboxResult:
    """Run `source` with `layer` as the only one of NEW_LAYERS on (or none of them, for the control)."""
    off = [name for name in NEW_LAYERS if name != layer or not with_layer]
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", ",".join(off))
    monkeypatch.setattr(runner, "_warned", set())
    limits.setdefault("timeout_s", 60)
    res = sandbox.run(source, "test_os_layers:run_body", payload, sandbox.RULE_POLICY, sandbox.Limits(static_check=False, **limits))
    assert res.ok, (res.reason, res.exception, res.stderr_tail[-2000:])
    assert res.layers[layer] or not with_layer
    assert not any(res.layers[name] for name in NEW_LAYERS if name != layer or not with_layer)
    assert not res.layers["static_check"]
    return res


def _need(res: sandbox.SandboxResult, layer: str) -> None:
    if not res.layers[layer]:
        pytest.skip(f"this machine gives no {layer} layer (see `optforge doctor`)")


# -- System V IPC -------------------------------------------------------------------------------

IPC_BODY = '''
import ctypes, ctypes.util

def body(payload):
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    key, flags = payload["key"], 0o1000 | 0o666
    return {
        "host_segment_seen": libc.shmget(payload["host_key"], 0, 0) >= 0,
        "made": [libc.shmget(key, 4096, flags) >= 0, libc.msgget(key, flags) >= 0, libc.semget(key, 1, flags) >= 0],
    }
'''


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _sysv_objects(key: int) -> dict[str, int]:
    """The host's System V objects under `key`: kind -> id (absent kinds left out)."""
    lib = _libc()
    ids = {"shm": lib.shmget(key, 0, 0), "msg": lib.msgget(key, 0), "sem": lib.semget(key, 0, 0)}
    return {kind: i for kind, i in ids.items() if i >= 0}


def _remove_sysv(key: int) -> None:
    lib = _libc()
    for kind, i in _sysv_objects(key).items():
        {"shm": lambda: lib.shmctl(i, IPC_RMID, None), "msg": lambda: lib.msgctl(i, IPC_RMID, None),
         "sem": lambda: lib.semctl(i, 0, IPC_RMID)}[kind]()


@pytest.fixture
def host_segment():
    """A System V shared memory segment of the host's, and a fresh key for the job's objects."""
    lib = _libc()
    host_key, key = random.randint(1 << 20, 1 << 29), random.randint(1 << 29, 1 << 30)
    shm = lib.shmget(host_key, 4096, IPC_CREAT | 0o666)
    if shm < 0:
        pytest.skip("System V shared memory is not available here")
    yield {"host_key": host_key, "key": key}
    _remove_sysv(host_key)
    _remove_sysv(key)


def test_ipc_namespace_alone(host_segment, monkeypatch):
    res = run_alone("ipc_namespace", IPC_BODY, host_segment, monkeypatch)
    _need(res, "ipc_namespace")
    # its namespace's limits are zero: it can make nothing, so nothing can outlive it either
    assert res.value == {"host_segment_seen": False, "made": [False, False, False]}
    assert _sysv_objects(host_segment["key"]) == {}, "the job's System V objects outlived it"
    # control: without the layer the job sees the host's segment and its own objects stay behind
    res = run_alone("ipc_namespace", IPC_BODY, host_segment, monkeypatch, with_layer=False)
    assert res.value == {"host_segment_seen": True, "made": [True, True, True]}
    assert set(_sysv_objects(host_segment["key"])) == {"shm", "msg", "sem"}


# -- read-only root -----------------------------------------------------------------------------

WRITE_BODY = '''
import errno, os

def body(payload):
    out = {}
    for d in payload["dirs"]:
        try:
            with open(os.path.join(d, payload["name"]), "w") as f:
                f.write("escaped")
            out[d] = "written"
        except OSError as e:
            out[d] = errno.errorcode.get(e.errno, str(e.errno))
    with open("own-file", "w") as f:  # its own directory stays writable
        f.write("fine")
    return out
'''


def _world_writable_dirs() -> list[str]:
    """Host directories a job of any uid could write to, outside the private tmpfs: /run/lock (issue
    15) where it is world-writable, and a fresh 1777 directory next to the working directory or the
    home directory where every ancestor lets others through."""
    found = [d for d in ("/run/lock", "/var/lock") if os.path.isdir(d) and os.stat(d).st_mode & 0o002]
    for parent in (os.getcwd(), os.path.expanduser("~")):
        real = os.path.realpath(parent)
        if real.startswith(("/tmp/", "/var/tmp/", "/dev/shm/")) or real in ("/tmp", "/var/tmp"):
            continue
        parts = real.split("/")
        if all(os.stat("/".join(parts[:i]) or "/").st_mode & 0o001 for i in range(1, len(parts) + 1)):
            try:
                d = os.path.join(real, f".optforge-ww-{uuid.uuid4().hex[:8]}")
                os.mkdir(d)
                os.chmod(d, 0o1777)
                found.append(d)
                break
            except OSError:
                continue
    return sorted({os.path.realpath(d) for d in found})


@pytest.fixture
def writable_dirs():
    dirs = _world_writable_dirs()
    if not dirs:
        pytest.skip("no world-writable directory outside the job's private tmpfs to try")
    name = f"optforge-escape-{uuid.uuid4().hex[:8]}"
    yield {"dirs": dirs, "name": name}
    for d in dirs:
        try:
            os.remove(os.path.join(d, name))
        except OSError:
            pass
        if os.path.basename(d).startswith(".optforge-ww-"):
            os.rmdir(d)


def test_read_only_root_alone(writable_dirs, monkeypatch):
    dirs, name = writable_dirs["dirs"], writable_dirs["name"]
    res = run_alone("read_only_root", WRITE_BODY, writable_dirs, monkeypatch)
    _need(res, "read_only_root")
    assert res.value == {d: "EROFS" for d in dirs}
    assert not any(os.path.exists(os.path.join(d, name)) for d in dirs)
    if "/run/lock" in dirs:
        assert res.value["/run/lock"] == "EROFS"  # the one issue 15 wrote to
    res = run_alone("read_only_root", WRITE_BODY, writable_dirs, monkeypatch, with_layer=False)
    assert res.value == {d: "written" for d in dirs}
    assert all(os.path.exists(os.path.join(d, name)) for d in dirs)


# -- /run hidden --------------------------------------------------------------------------------

CONNECT_BODY = '''
import errno, os, socket

def body(payload):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(payload["path"])
        reached = "connected"
    except OSError as e:
        reached = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
    return {"reached": reached, "run": sorted(os.listdir("/run")), "var_run": sorted(os.listdir("/var/run"))}
'''


@pytest.fixture
def run_socket():
    """A listening unix socket in a world-writable directory under /run, open to every uid."""
    dirs = [d for d in ("/run/lock", f"/run/user/{os.getuid()}") if os.path.isdir(d) and os.access(d, os.W_OK)]
    if not dirs or not os.stat(dirs[0]).st_mode & 0o001:
        pytest.skip("no directory under /run to put a test socket in, that a job could search")
    path = os.path.join(dirs[0], f"optforge-{uuid.uuid4().hex[:8]}.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)  # the socket's mode must not be what keeps the job out
    srv.listen(8)
    yield {"path": path}
    srv.close()
    os.remove(path)


def test_run_hidden_alone(run_socket, monkeypatch):
    res = run_alone("run_hidden", CONNECT_BODY, run_socket, monkeypatch)
    _need(res, "run_hidden")
    assert res.value["reached"] == "ENOENT"
    assert res.value["run"] == [] and res.value["var_run"] == []
    res = run_alone("run_hidden", CONNECT_BODY, run_socket, monkeypatch, with_layer=False)
    assert res.value["reached"] == "connected"


# -- disk quota ---------------------------------------------------------------------------------

FILL_BODY = '''
import errno, json, os, time

def body(payload):
    written, block, error = 0, bytes(1 << 20), None
    try:
        for i in range(payload["bytes"] // (4 << 20)):
            with open(f"fill_{i}.bin", "wb", buffering=0) as f:  # 4 MiB each: no one file is large
                for _ in range(4):
                    written += f.write(block)
    except OSError as e:
        error = errno.errorcode.get(e.errno, str(e.errno))
    report = {"written": written, "error": error}
    print(json.dumps(report), flush=True)
    time.sleep(payload.get("hold_s", 0))  # stays at its quota, its files kept
    return report
'''
QUOTA = 32 << 20


def _fill(monkeypatch, payload: dict, **limits) -> sandbox.SandboxResult:
    """FILL_BODY with disk_quota as the only one of NEW_LAYERS on; any outcome."""
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", ",".join(n for n in NEW_LAYERS if n != "disk_quota"))
    monkeypatch.setattr(runner, "_warned", set())
    return sandbox.run(FILL_BODY, "test_os_layers:run_body", payload, sandbox.RULE_POLICY,
                       sandbox.Limits(timeout_s=60, static_check=False, max_output_bytes=QUOTA, **limits))


def test_disk_quota_alone(monkeypatch):
    # control first: without the layer the job writes past the limit (48 MiB here, not 720 on the
    # host's disk), in files each under the per-file limit
    res = run_alone("disk_quota", FILL_BODY, {"bytes": 48 << 20}, monkeypatch, with_layer=False, max_output_bytes=QUOTA)
    assert res.value == {"written": 48 << 20, "error": None}
    _need(run_alone("disk_quota", FILL_BODY, {"bytes": 0}, monkeypatch, max_output_bytes=QUOTA), "disk_quota")
    # a job that reaches its quota and stays there is stopped at the quota, long before its timeout
    # (a sleep past it: without the stop, the reason would be `timeout`)
    res = _fill(monkeypatch, {"bytes": 720 << 20, "hold_s": 120})
    assert res.status is Status.CRASHED and res.reason == "disk_quota", (res.reason, res.exception)
    assert "disk quota" in res.exception and res.layers["disk_quota"] and not res.layers["static_check"]
    report = json.loads(res.stdout_tail.strip().splitlines()[-1])
    assert report["error"] == "ENOSPC" and QUOTA - (8 << 20) <= report["written"] <= QUOTA
    # one that ends at its quota before the supervisor looks is found there when it has ended
    res = _fill(monkeypatch, {"bytes": 720 << 20})
    assert res.status is Status.CRASHED and res.reason == "disk_quota" and "disk quota" in res.exception


INODE_BODY = '''
import errno, os

def body(payload):
    made, error = 0, None
    for i in range(payload["n"]):
        try:
            os.symlink("x", f"/tmp/l{i}")  # no bytes, only an inode and kernel memory
        except OSError as e:
            error = errno.errorcode.get(e.errno, str(e.errno))
            break
        made += 1
    return {"made": made, "error": error}
'''


def test_private_tmp_has_an_inode_limit():
    """Empty files and symlinks cost a tmpfs no bytes: without an inode limit a job could pin
    gigabytes of host kernel memory through its private /tmp. Every layer on, checker off."""
    res = sandbox.run(INODE_BODY, "test_os_layers:run_body", {"n": 40000}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=60, static_check=False))
    assert res.ok, (res.reason, res.exception)
    assert res.value["error"] == "ENOSPC" and res.value["made"] < 20000, res.value


def test_require_demands_a_new_layer(monkeypatch):
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "disk_quota")
    res = sandbox.run("x = 1\n", "optforge.sandbox.selftest:noop", {}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=60, require=("disk_quota",)))
    assert res.status is Status.LOST and res.reason == "layer_unavailable" and "disk_quota" in res.exception


def test_result_files_come_back_from_the_quota_tmpfs():
    """With every layer on, the job's result (JSON and buffers) reaches the caller, and a job that
    left a FIFO as its result is still refused as such (it arrives as a FIFO)."""
    res = sandbox.run("x = 1\n", "sandbox_jobs:buffers_job", {}, sandbox.RULE_POLICY, sandbox.Limits(timeout_s=60))
    assert res.ok, res.exception
    assert res.value == {"n": 3} and res.buffers["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    res = sandbox.run("x = 1\n", "forged_jobs:forge", {"kind": "fifo"}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=60, static_check=False))
    assert res.reason == "bad_output" and "not a regular file" in res.exception


UNDO_BODY = '''
import ctypes, os

def body(payload):
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/status") as f:
        caps = next(line.split()[1] for line in f if line.startswith("CapEff"))
    return {
        "uid": os.getuid(),
        "capabilities": caps,
        "unmounted_run": libc.umount2(b"/run", 2) == 0,  # MNT_DETACH
        "remounted_root_writable": libc.mount(None, b"/", None, 32 | 4096, None) == 0,  # MS_REMOUNT | MS_BIND
    }
'''


def test_a_job_left_root_cannot_undo_the_mount_layers(monkeypatch):
    """Where the uid switch is off (or impossible), the job stays root of its namespaces: it drops
    every capability first, so it cannot unmount the tmpfs over /run or make / writable again."""
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "privileges")
    res = sandbox.run(UNDO_BODY, "test_os_layers:run_body", {}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=60, static_check=False))
    assert res.ok, (res.reason, res.exception)
    _need(res, "run_hidden")
    assert res.value["capabilities"] == "0000000000000000"
    assert not res.value["unmounted_run"] and not res.value["remounted_root_writable"]


WRITABLE_PROC_BODY = '''
import os

def body(payload):
    # a descriptor through which a sysctl of the host (here kernel/core_pattern, host-wide) opens for writing
    found = []
    for fd in range(3, 256):
        try:
            w = os.open("sys/kernel/core_pattern", os.O_WRONLY, dir_fd=fd)
        except OSError:
            continue
        os.close(w)
        found.append(fd)
    return {"writable_proc_fds": found}
'''


def test_a_job_left_root_holds_no_writable_proc(monkeypatch):
    """The job keeps a writable copy of /proc for its rule host (`layers.keep_writable_proc`); a job that
    stays root on the host (uid switch off) must not: root without capabilities passes the 0644 check
    of host-wide sysctls, and kernel/core_pattern is a way to full root."""
    monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", "privileges")
    res = sandbox.run(WRITABLE_PROC_BODY, "test_os_layers:run_body", {}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=60, static_check=False))
    assert res.ok, (res.reason, res.exception)
    assert res.value == {"writable_proc_fds": []}


DUMPABLE_BODY = '''
import ctypes

def body(payload):
    return {"dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)}  # PR_GET_DUMPABLE of this process
'''


@pytest.mark.parametrize("disable", ["", "namespaces,privileges"], ids=["all-layers", "degraded"])
def test_the_template_and_every_job_forked_from_it_are_undumpable(disable, monkeypatch):
    """Without user namespaces a rule runs under the caller's uid in its PID namespace: were the warm
    template (which forks every later job and holds earlier candidates' sources in its memory) or a
    supervisor dumpable, it could ptrace them or open their /proc/<pid>/mem. They are not, from the
    template's start on, and the job inherits it."""
    if disable:
        monkeypatch.setenv("OPTFORGE_SANDBOX_DISABLE", disable)
    monkeypatch.setattr(runner, "_warned", set())
    res = sandbox.run(DUMPABLE_BODY, "test_os_layers:run_body", {}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=60, static_check=False))
    assert res.ok, (res.reason, res.exception)
    assert res.value == {"dumpable": 0}


INHERIT_RULE = '''
import torch
LR = 1e-3

def init(p, ctx):
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    facts = {"run": os.listdir("/run"), "host_segment": libc.shmget(HOST_KEY, 0, 0) >= 0}
    for name, path in (("run_lock", "/run/lock/x"), ("home", os.path.join(os.environ.get("HOME", "/"), "x"))):
        try:
            open(path, "w").close()
            facts[name] = "written"
        except OSError as e:
            facts[name] = e.strerror
    raise RuntimeError(repr(facts))

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_rule_processes_inherit_the_os_layers(host_segment):
    """The split job's rule processes are forked (through the rule host) from the job process after
    these layers are in place: a hostile rule, checker off, finds /run empty, none of the host's
    System V segments, and nowhere to write."""
    from optforge.evaluators import EvalRequest, evaluate

    source = INHERIT_RULE.replace("HOST_KEY", str(host_segment["host_key"]))
    result = evaluate(EvalRequest(source, stage="smoke", suite="smoke", sandbox={"static_check": False}))
    layers = result.artifacts["sandbox"]["layers"]
    if not (layers["run_hidden"] and layers["ipc_namespace"]):
        pytest.skip("this machine gives no run_hidden or ipc_namespace layer")
    assert result.status is Status.CRASHED, result.feedback
    facts = result.artifacts["exception"]
    assert "'run': []" in facts and "'host_segment': False" in facts
    assert "'run_lock': 'No such file or directory'" in facts and "'home': 'Read-only file system'" in facts


IPC_RULE = '''
import torch
LR = 1e-3

def init(p, ctx):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    flags = 0o1000 | 0o600  # IPC_CREAT; key IPC_PRIVATE
    facts = {"shm": libc.shmget(0, 1 << 20, flags) >= 0, "msg": libc.msgget(0, flags) >= 0,
             "sem": libc.semget(0, 1, flags) >= 0,
             # the way around: a user namespace of its own, and in it an IPC namespace with the default limits
             "new_ipc_namespace": libc.unshare(0x10000000 | 0x08000000) == 0}
    raise RuntimeError(repr(facts))

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_a_rule_process_can_make_no_system_v_object():
    """Checker off: in the rule process's own IPC namespace every System V limit is zero, so a rule can
    allocate no shared memory segment (memory outside its RLIMIT_AS and RSS), queue or semaphore set,
    and it can make no user namespace in which to get an IPC namespace with the default limits.
    Before, the three succeeded (16 x 16 MiB of segments were held outside the rule's accounting)."""
    runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
    res = sandbox.run(IPC_RULE, "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=120, static_check=False))
    assert res.ok, (res.reason, res.exception, res.stderr_tail[-2000:])
    rule_layers = res.value["rule_layers"]
    if not (rule_layers.get("pid_namespace") and rule_layers.get("ipc_namespace")):
        pytest.skip("no PID or IPC namespace for the rule process here")
    message = res.value["failure"]["message"]
    assert message == "{'shm': False, 'msg': False, 'sem': False, 'new_ipc_namespace': False}", message
    assert rule_layers["user_namespace"] and rule_layers["ipc_limits"] and rule_layers["no_user_namespaces"], rule_layers


NON_ROOT_CALLER = """
import json, sys
from optforge import sandbox
runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
res = sandbox.run(sys.stdin.read(), "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs},
                  sandbox.RULE_POLICY, sandbox.Limits(timeout_s=120, static_check=False))
print(json.dumps({"ok": res.ok, "reason": res.reason, "value": res.value if res.ok else None,
                  "stderr": res.stderr_tail[-2000:]}, default=str))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the caller as another (non-root) uid, which needs root")
def test_a_non_root_users_rule_process_can_make_no_system_v_object():
    """The same rule, for a caller without root (the job is root only in a user namespace). Before, the
    rule host's own user namespace could not map its root onto the job's uid 0 (the job had dropped
    CAP_SETFCAP by then), so the rule process's System V limits stayed at the defaults and a rule held
    2 GiB of shared memory outside its RLIMIT_AS. Now the job makes that namespace while it holds its
    capabilities (`layers.prepare_user_namespace`) and the rule host enters it."""
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from test_procedure_environ import run_as

    report = run_as(4243, NON_ROOT_CALLER, IPC_RULE)
    assert report["ok"], report
    rule_layers = report["value"]["rule_layers"]
    if not (rule_layers.get("pid_namespace") and rule_layers.get("ipc_namespace")):
        pytest.skip("no user namespaces for a non-root caller here")
    message = report["value"]["failure"]["message"]
    assert message == "{'shm': False, 'msg': False, 'sem': False, 'new_ipc_namespace': False}", message
    assert rule_layers["user_namespace"] and rule_layers["ipc_limits"] and rule_layers["no_user_namespaces"], rule_layers
