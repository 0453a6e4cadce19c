"""ATTACK (failed on main at c56d3d8; fixed): without root, the job process holds the
user namespace it made for its rule host (`layers.prepare_user_namespace`, root mapped onto the job's
uid 0, which is the caller's uid outside) until the rule host is forked. A `sandbox.run` job that runs its
candidate in the job process itself (`sandbox_jobs:exec_job`, checker off) found that descriptor among
its open files and entered the namespace (setns). With root's uid and gid both mapped there, its
capabilities there counted for every file of the caller's: it read a file of the caller's whose mode
(0000) denies even its owner, on the read-only root, and it wrote file capabilities
(`security.capability`) on a file of its own; the job itself, or a user namespace it makes on its own
(where it can map no id), can do neither. The descriptor was also inherited by every program the job
executes. The namespace then mapped no gid (entering it gives capabilities over no file) and its
descriptor became close-on-exec, but the job's uid may write that gid map itself, and the job held a
writable /proc to write it through (the second test). Now a job function not marked `starts_rule_host`
(`sandbox.job_process`) runs with neither the namespace nor the writable /proc: both tests check that
the job holds none and that the file stays unread.

The caller runs as a non-root uid (started as root here, as in
tests/sandbox/test_os_layers.py::test_a_non_root_users_rule_process_can_make_no_system_v_object); the
file is on a tmpfs the launcher mounts in its own mount namespace, so nothing is left on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from optforge.sandbox.import_locations import import_locations

UID = 4244
SANDBOX_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sandbox")
MOUNT_POINT = "/mnt"  # covered by a tmpfs in the launcher's own mount namespace only

# as root: a mount namespace of our own where UID can read the interpreter and optforge, a 0000 file of
# UID's in it, then become UID and run the caller
LAUNCH = '''
import ctypes, os, sys
from optforge.sandbox import layers as L
uid, paths, mnt = int(sys.argv[1]), sys.argv[2].split(":"), sys.argv[3]
assert L.libc().unshare(ctypes.c_int(L.CLONE_NEWNS)) == 0 and L._mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
assert L.expose_paths(paths, uid) == [], "the interpreter or optforge stays unreadable to the test uid"
assert L._mount("tmpfs", mnt, "tmpfs", L.MS_NOSUID | L.MS_NODEV, "size=64k,mode=0755")
secret = os.path.join(mnt, "secret")
with open(secret, "w") as f:
    f.write("caller-canary")
os.chown(mnt, uid, uid)
os.chown(secret, uid, uid)
os.chmod(secret, 0)
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[4], sys.argv[5]])
'''

CALLER = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from optforge import sandbox
res = sandbox.run(sys.stdin.read(), "sandbox_jobs:exec_job", {}, sandbox.RULE_POLICY,
                  sandbox.Limits(timeout_s=120.0, static_check=False))
print(json.dumps({"exception": res.exception, "layers": res.layers}))
'''

CANDIDATE = '''
import ctypes, json, os, struct

SECRET = "MOUNT_POINT/secret"
MAP_GID = MAP_GID_FLAG
libc = ctypes.CDLL(None, use_errno=True)


def read_secret():
    try:
        with open(SECRET) as f:
            return f.read()
    except OSError as e:
        return e.strerror


def write_file_capability(path):
    open(path, "w").close()
    try:  # v2: every capability permitted and effective
        os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000001, 0xffffffff, 0, 0x1ff, 0))
        return "written"
    except OSError as e:
        return e.strerror


def entered(fd):
    """In a child: enter the user namespace of `fd`, then try both."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        facts = {"setns": libc.setns(fd, 0x10000000) == 0}
        if facts["setns"]:
            facts["secret"] = read_secret()
            facts["file_capability"] = write_file_capability("fcap")
            if MAP_GID:  # the job's writable /proc copy (layers.keep_writable_proc), found among its descriptors
                from optforge.sandbox import layers
                libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: its /proc/self files are its own again
                facts["gid_map"] = layers.proc_write("self/gid_map", "0 0 1")
                facts["secret_after_gid_map"] = read_secret()
        os.write(w, json.dumps(facts).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 1 << 16)
    os.waitpid(pid, 0)
    return json.loads(data)


def init(p, ctx):
    fds = [int(fd) for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")
           and os.readlink(f"/proc/self/fd/{fd}").startswith("user:[")]
    os.system("ls -l /proc/self/fd/ > seen_by_exec 2>&1")
    with open("seen_by_exec") as f:
        exec_inherits = "user:[" in f.read()
    from optforge.sandbox import layers
    facts = {"job": read_secret(), "job_file_capability": write_file_capability("fcap_job"),
             "user_namespace_fds": len(fds), "exec_inherits": exec_inherits,
             "writable_proc": layers._writable_proc is not None,
             "entered": [entered(fd) for fd in fds]}
    raise RuntimeError("FACTS" + json.dumps(facts))


def update(p, g, state, ctx):
    return -ctx.lr * g
'''.replace("MOUNT_POINT", MOUNT_POINT)


def _job_facts(map_gid: bool) -> dict:
    """What CANDIDATE found, run in the job process of a non-root caller's `sandbox.run` job."""
    if os.geteuid() != 0:
        pytest.skip("starts the caller as another (non-root) uid, which needs root")
    if not os.path.isdir(MOUNT_POINT):
        pytest.skip(f"no {MOUNT_POINT} to mount the caller's file on")
    paths = ":".join(import_locations(["optforge"]) + [os.path.dirname(sys.executable), os.path.realpath(SANDBOX_TESTS)])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("OPTFORGE_SANDBOX_DISABLE", None)
    out = subprocess.run([sys.executable, "-c", LAUNCH, str(UID), paths, MOUNT_POINT, CALLER, os.path.realpath(SANDBOX_TESTS)],
                         input=CANDIDATE.replace("MAP_GID_FLAG", str(map_gid)), capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    exception = str(report["exception"])
    assert "FACTS" in exception, report
    facts = json.loads(exception[exception.index("FACTS") + 5:exception.rindex("}") + 1])
    if not report["layers"].get("read_only_root"):
        pytest.skip(f"no user namespaces for a non-root caller here: {report['layers']}")
    # the file is there and protected from the job as it is: what follows is the namespace's doing
    assert facts["job"] == "Permission denied" and facts["job_file_capability"] == "Operation not permitted", facts
    return facts


def test_a_job_cannot_use_its_rule_hosts_user_namespace_on_the_callers_files():
    facts = _job_facts(map_gid=False)
    # a job that starts no rule host holds neither its namespace nor the writable /proc (job_process)
    assert facts["user_namespace_fds"] == 0 and not facts["writable_proc"], facts
    assert "caller-canary" not in json.dumps(facts), facts
    for inside in facts["entered"]:
        assert inside.get("file_capability") in (None, "Operation not permitted"), facts
    assert not facts["exec_inherits"], facts


def test_a_job_cannot_map_the_gid_of_its_rule_hosts_user_namespace_itself():
    """The namespace's gid map is left unwritten, and the kernel lets its owner's uid (every process of the
    job's) write it once, to its own gid, through a writable /proc: the job held one
    (`layers.keep_writable_proc`). A candidate in the job process that entered the namespace and wrote
    the map there had its capabilities over the caller's files again (it read the 0000 file here). Now a
    job function not marked `starts_rule_host` runs with neither (`job_process._call_job`)."""
    facts = _job_facts(map_gid=True)
    assert facts["user_namespace_fds"] == 0 and not facts["writable_proc"], facts
    assert "caller-canary" not in json.dumps(facts), facts


RULE = '''
import torch
LR = 1e-3

def init(p, ctx):
    import ctypes, fcntl, json, os
    libc = ctypes.CDLL(None, use_errno=True)
    fds = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")}
    facts = {"user_namespace_fds": [fd for fd, what in fds.items() if what.startswith("user:[")],
             "setns": [fd for fd in fds if libc.setns(int(fd), 0) == 0]}
    own = os.open("/proc/self/ns/user", os.O_RDONLY)
    try:
        facts["parent"] = fcntl.ioctl(own, 0xb702)  # NS_GET_PARENT
    except OSError as e:
        facts["parent"] = e.strerror
    facts["new_user_namespace"] = libc.unshare(0x10000000) == 0
    try:
        with open("/proc/sys/kernel/shmmni", "w") as f:
            f.write("4096")
        facts["shmmni"] = "written"
    except OSError as e:
        facts["shmmni"] = e.strerror
    raise RuntimeError("FACTS" + json.dumps(facts))

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the caller as another (non-root) uid, which needs root")
def test_a_non_root_users_rule_process_holds_no_way_back_to_a_user_namespace():
    """Guard (held before and after): the rule host enters the prepared namespace and closes its
    descriptor before it forks a rule process, so a rule (checker off) finds no user-namespace descriptor,
    cannot reach its namespace's parent, make a namespace, or write its System V limits."""
    sys.path.insert(0, os.path.realpath(SANDBOX_TESTS))
    from test_os_layers import NON_ROOT_CALLER
    from test_procedure_environ import run_as

    report = run_as(UID, NON_ROOT_CALLER, RULE)
    assert report["ok"], report
    if not report["value"]["rule_layers"].get("user_namespace"):
        pytest.skip("no user namespaces for a non-root caller here")
    message = report["value"]["failure"]["message"]
    facts = json.loads(message[message.index("FACTS") + 5:])
    assert facts == {"user_namespace_fds": [], "setns": [], "parent": "Operation not permitted",
                     "new_user_namespace": False, "shmmni": "Read-only file system"}, facts
