"""The procedure process: isolates itself (every layer after the namespaces), says which layers held,
then runs the one procedure of its start message (`procedure_exec`) and sends the end message.
Forked by the host (`optforge.sandbox.procedure_host`); PID 1 of its own PID namespace when it has one.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Sequence

from optforge.sandbox import layers as L
from optforge.sandbox.procedure_exec import run_procedure
from optforge.sandbox.procedure_proxies import BrokerGone, Channel

_OPEN_FILES = 16  # the two channel ends, stdio and a margin; the procedure opens nothing
_FILE_BYTES = 1 << 20
_TMPFS_BYTES = 1 << 20
EXIT_BROKER_GONE = 75  # the procedure process ends with this when the trusted side went away mid-call
EXIT_SETUP = 70
EXIT_CPU_LIMIT = 128 + signal.SIGXCPU  # as if SIGXCPU had killed it (see isolate_process)


def run_procedure_process(in_fd: int, out_fd: int, ns: dict[str, bool], host_pid: int, cpu_s: int, memory_mb: int,
                          switch_uid: bool, homes: Sequence[str]) -> None:
    """The procedure process's whole life, from the host's fork to `os._exit` (never returns)."""
    code = EXIT_SETUP
    channel: Channel | None = None
    try:
        L.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != host_pid and not ns.get("pid"):
            return  # the host died before the death signal was set
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        L.close_fds_except({0, 1, 2, in_fd, out_fd})
        channel = Channel(in_fd, out_fd)
        layers = isolate_process(ns, host_pid, cpu_s, memory_mb, switch_uid=switch_uid, homes=homes)
        channel.send({"kind": "ready", "layers": layers})
        if not (layers["processes_isolated"] and layers["unprivileged"] and layers["no_capabilities"]):
            # refused before the start message (the source) is read: the trusted side says what to do
            code = 0
            channel.send({"kind": "end", "ok": False, "reason": "isolation",
                          "error": {"type": "IsolationError", "message": "no PID namespace and no uid of its own, "
                                    "root on the host, or capabilities left"}})
            return
        start = channel.receive()
        if start.get("kind") != "start":
            return
        code = 0
        channel.send(run_procedure(start, channel))
    except BrokerGone:
        code = EXIT_BROKER_GONE
    except BaseException as e:  # noqa: BLE001 - our own setup failed: say so if the channel is up
        if channel is not None:
            try:
                channel.send({"kind": "end", "ok": False, "reason": "setup",
                              "error": {"type": type(e).__name__, "message": str(e)[:500]}})
            except BaseException:  # noqa: BLE001
                pass
    finally:
        os._exit(code)


def isolate_process(ns: dict[str, bool], host_pid: int, cpu_s: int, memory_mb: int, *, switch_uid: bool = True,
                    homes: Sequence[str] = ()) -> dict[str, bool]:
    """Every layer after the namespaces (`ns`: what `layers.unshare_namespaces` gave the host), in the
    process about to run a procedure; best effort. `switch_uid`: as root, become a fresh uid. `homes`:
    the caller's home directories, hidden (import locations under them bound back). Returns which
    layers held."""
    keep = L.import_locations()
    mounts = L.private_mounts(None, _TMPFS_BYTES, keep) if ns.get("mnt") else {}
    private = bool(mounts.get("tmp"))
    layers = {
        "process_group": True,
        "pid_namespace": bool(ns.get("pid")),
        "network": bool(ns.get("net")),
        "private_tmp": private,
        "run_hidden": private and L.hide_run(keep),
        # without root the procedure runs under the caller's uid outside its user namespace: the
        # caller's 0600 files (~/.netrc, API keys under ~/.config) are its to read unless hidden
        "home_hidden": private and L.hide_home(homes, keep, [t for t in L.PRIVATE_TMP if os.path.isdir(t)]),
    }
    # a fresh uid only as root on the host: root of a user namespace (a non-root user's run) cannot
    # switch to an unmapped uid, and must still lose its capabilities below
    uid = L.UID_BASE + host_pid if os.geteuid() == 0 and not ns.get("user") and switch_uid else None
    if uid is not None and (L.expose_paths(keep, uid) if private else L.blocked_paths(keep, uid)):
        uid = None  # the uid could not read our own code: stay root of this process, without capabilities
    # an IPC namespace of its own with every System V limit at zero, set while /proc is still writable
    layers["ipc_namespace"] = L.ipc_namespace() and L.zero_ipc_limits()
    layers["read_only_root"] = private and L.read_only_root([t for t in L.PRIVATE_TMP if os.path.isdir(t)])
    L.new_session_keyring()  # not the broker's, where the user may keep an API key
    os.environ.clear()
    os.environ.update(L.scrubbed_env())
    layers["no_secrets"] = True
    os.chdir("/")
    unprivileged = L.drop_privileges(uid)
    own_uid = uid is not None and unprivileged
    # Not root on the host. Root without capabilities is still the owner of root's files: the mounts are
    # read-only, not hidden, so it could read root's 0600 files (~/.netrc, a .env with the API key).
    # Without this layer the procedure is not started either.
    layers["unprivileged"] = own_uid or bool(ns.get("user")) or os.geteuid() != 0
    # Out of reach of the user's other processes (the broker holding the LLM API key, the shell, Ray's):
    # in their PID namespace and under their uid, a process passes the kernel's check for reading
    # /proc/<pid>/environ and for kill(); its own PID namespace and /proc, or a uid of its own, stop both.
    layers["processes_isolated"] = bool(ns.get("pid") and mounts.get("proc")) or own_uid
    # always: a uid switch that failed leaves every capability (over the procedure's own namespaces:
    # enough to unmount what hides the host and remount / read-write); refused below if any is left
    layers["no_capabilities"] = L.drop_capabilities()
    layers["no_new_privs"] = _no_new_privs()
    # CPU seconds (SIGXCPU, SIGKILL 2 s later), address space, file size, open files, and one process:
    # fork fails (RLIMIT_NPROC binds every uid but the host's root, which the uid switch above leaves).
    # As PID 1 of its namespace the process never gets a signal it has no handler for (SIGKILL from
    # the kernel aside), so SIGXCPU gets one; a C call that holds the interpreter meets the hard limit.
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    layers["rlimits"] = L.set_rlimits(cpu_s, memory_mb, _FILE_BYTES, _OPEN_FILES, 1)
    return layers


def _on_cpu_limit(signum: int, frame: Any) -> None:
    os._exit(EXIT_CPU_LIMIT)


def _no_new_privs() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.split() == ["NoNewPrivs:", "1"] for line in f)
    except OSError:
        return False


