"""A clean host process that forks one isolated child per request, for untrusted code that must be
kept apart from the trusted process that drives it.

The trusted process (inside a sandbox job, already under its namespaces, uid and limits) calls
`RuleHost.start()` before it holds anything worth stealing. The host is a fork of it at that moment:
it never loads untrusted code and holds no model or data. It enters a user namespace and makes every
mount read-only once; then it keeps one spare child ready (an intermediate process that opens a
fresh PID namespace and forks the child, which isolates itself and blocks), so a request only
hands its message and file descriptors over. The child:

- is PID 1 of its own PID namespace (it sees and can signal nothing else; whatever it starts dies
  with it), with its own /proc;
- sees every mount read-only (the host's own mount namespace, made once): it has no writable path,
  so nothing it writes can reach a later child;
- has its own IPC namespace: no System V object outlives it (abstract Unix sockets die with their
  process, and the sandbox job's network namespace has no interface up);
- has no capabilities left (and `no_new_privs` from the sandbox), so it cannot undo the above;
- inherits only the file descriptors the request passed (SCM_RIGHTS over an anonymous socketpair).

Each layer is best effort: a child whose layer could not be applied still runs, and `Child.layers`
says which held. A fork has no separate address space from what it was forked from, which is why
the host must be forked while its parent is still clean.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from optforge.sandbox import layers as L

CLONE_NEWIPC = 0x08000000
PR_SET_DUMPABLE = 4
MS_RDONLY, MS_REMOUNT = 1, 32
# statvfs f_flag bit -> mount(2) flag, for the flags a remount must keep
_STATVFS_TO_MS = ((os.ST_NOSUID, 2), (os.ST_NODEV, 4), (os.ST_NOEXEC, 8), (os.ST_NOATIME, 1024),
                  (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))
_MSG_BYTES = 1 << 16


class HostError(RuntimeError):
    """The host process died or broke its protocol (infrastructure, not the child's doing)."""


@dataclass
class Child:
    """One forked child, as the trusted side sees it: `pid` is the intermediate process, which exits
    when the child does (its exit code is the child's, or 128 + the signal that killed it).
    `layers`: user_namespace, read_only_mounts, pid_namespace, ipc_namespace, no_capabilities."""

    pid: int
    pidfd: int
    layers: dict[str, bool] = field(default_factory=dict)


class RuleHost:
    """Trusted-side handle of the host process. Not thread-safe: one caller drives it."""

    def __init__(self, pid: int, sock: socket.socket, layers: dict[str, bool]):
        self.pid, self._sock, self.layers = pid, sock, layers
        self._exits: dict[int, int] = {}
        self._forgotten: set[int] = set()

    @classmethod
    def start(cls) -> "RuleHost":
        """Fork the host now. Call it before building any model or loading any data.

        The caller becomes non-dumpable: no child may ptrace it or read its /proc/<pid>/mem.
        """
        lib = L.libc()
        if lib is not None:
            lib.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                parent.close()
                _host_main(child)
            except BaseException:  # noqa: BLE001 - the trusted side sees the host gone
                code = 1
            finally:
                os._exit(code)
        child.close()
        host = cls(pid, parent, {})
        host.layers = host._recv().get("layers", {})
        return host

    def _recv(self) -> dict[str, Any]:
        data = self._sock.recv(_MSG_BYTES)
        if not data:
            raise HostError("the rule host process is gone")
        return json.loads(data)

    def spawn(self, target: str, args: dict[str, Any], fds: list[int]) -> Child:
        """Fork a child that calls `target` ("module:function") as function(args, fds) and exits.

        `fds` are passed to the child (the caller keeps its own copies). The function runs after
        isolation; its return ends the child with code 0, an exception with code 70.
        """
        socket.send_fds(self._sock, [json.dumps({"target": target, "args": args}).encode()], fds)
        msg = self._recv()
        while "exit" in msg:  # an earlier child's end, reported while we waited
            self._record_exit(msg)
            msg = self._recv()
        pid = int(msg["pid"])
        return Child(pid, os.pidfd_open(pid), dict(msg.get("layers", {})))

    def wait(self, child: Child) -> int:
        """Block until `child` has ended; its exit code (128 + signal number if it was killed)."""
        while child.pid not in self._exits:
            msg = self._recv()
            if "exit" in msg:
                self._record_exit(msg)
        if child.pidfd >= 0:
            os.close(child.pidfd)
            child.pidfd = -1
        return self._exits.pop(child.pid)

    def forget(self, child: Child) -> None:
        """Stop tracking `child`, which is ending on its own (or is killed when the host closes)."""
        self._forgotten.add(child.pid)
        if child.pidfd >= 0:
            os.close(child.pidfd)
            child.pidfd = -1

    def _record_exit(self, msg: dict[str, Any]) -> None:
        pid = int(msg["exit"])
        if pid in self._forgotten:
            self._forgotten.discard(pid)
        else:
            self._exits[pid] = int(msg["code"])

    def close(self) -> None:
        """Stop the host (it kills any child still running) and reap it."""
        try:
            self._sock.close()
        finally:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


# ---------------------------------------------------------------------------------------------
# the host process


def _host_main(sock: socket.socket) -> None:
    L.set_parent_death_signal(signal.SIGKILL)
    userns = _enter_user_namespace()
    read_only = _read_only_mount_namespace()
    base = {"user_namespace": userns, "read_only_mounts": read_only}
    sock.send(json.dumps({"layers": base}).encode())
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    live: dict[int, int] = {}  # pidfd -> pid
    spare = _Spare.fork(sock, base)  # isolated and waiting before it is needed: a request only hands over
    try:
        while True:
            for fd, _ in poller.poll():
                if fd != sock.fileno():
                    pid = live.pop(fd)
                    poller.unregister(fd)
                    os.close(fd)
                    _, status = os.waitpid(pid, 0)
                    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
                    sock.send(json.dumps({"exit": pid, "code": code}).encode())
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(sock, _MSG_BYTES, 16)
                except OSError:
                    data, fds = b"", []
                if not data:  # the trusted side is gone: nothing of ours may outlive it
                    return
                layers = spare.hand_over(data, fds)
                for f in fds:
                    os.close(f)
                pidfd = os.pidfd_open(spare.pid)
                live[pidfd] = spare.pid
                poller.register(pidfd, select.POLLIN)
                sock.send(json.dumps({"pid": spare.pid, "layers": layers}).encode())
                spare = _Spare.fork(sock, base)
    finally:
        for pid in [*live.values(), spare.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _Spare:
    """The next child, forked and isolated ahead of its request, blocked on its own socketpair."""

    def __init__(self, pid: int, conn: socket.socket):
        self.pid, self.conn = pid, conn

    @classmethod
    def fork(cls, host_sock: socket.socket, layers: dict[str, bool]) -> "_Spare":
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            host_sock.close()
            ours.close()
            _intermediate(theirs, layers)
        theirs.close()
        return cls(pid, ours)

    def hand_over(self, request: bytes, fds: list[int]) -> dict[str, bool]:
        """Send the request and its fds; the child's layers (what isolation held), as it reported them
        when it was ready."""
        try:
            raw = self.conn.recv(_MSG_BYTES)
            socket.send_fds(self.conn, [request], fds)
            layers = json.loads(raw) if raw else {}
        except (OSError, ValueError):
            layers = {}
        self.conn.close()
        return {k: bool(v) for k, v in layers.items()} if isinstance(layers, dict) else {}


def _enter_user_namespace() -> bool:
    """A user namespace of our own, with our uid mapped to itself: the children get capabilities over
    the namespaces they create, and none over anything outside them."""
    lib = L.libc()
    if lib is None:
        return False
    uid, gid = os.getuid(), os.getgid()
    lib.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # the id maps are written through /proc/self
    try:
        if lib.unshare(ctypes.c_int(L.CLONE_NEWUSER)) != 0:
            return False
        try:
            L._write("/proc/self/setgroups", "deny")
            L._write("/proc/self/uid_map", f"{uid} {uid} 1")
            L._write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError:
            return False
        return True
    finally:
        lib.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/mem on us from a child


def _intermediate(conn: socket.socket, layers: dict[str, bool]) -> None:
    """Fork the child into a fresh PID namespace, wait for it, exit with its code."""
    code = 70
    try:
        L.set_parent_death_signal(signal.SIGKILL)
        lib = L.libc()
        pid_ns = lib is not None and lib.unshare(ctypes.c_int(L.CLONE_NEWPID)) == 0
        pid = os.fork()
        if pid == 0:
            _child(conn, {**layers, "pid_namespace": pid_ns})
        conn.close()
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    finally:
        os._exit(code)


def _child(conn: socket.socket, layers: dict[str, bool]) -> None:
    """Isolate, wait for the request, run it. Nothing of the request exists before isolation."""
    code = 70
    try:
        L.set_parent_death_signal(signal.SIGKILL)
        layers.update(isolate(pid_namespace=layers["pid_namespace"]))
        _close_other_fds({0, 1, 2, conn.fileno()})
        conn.send(json.dumps(layers).encode())  # queued for the host to read at hand-over
        data, fds, _, _ = socket.recv_fds(conn, _MSG_BYTES, 16)
        conn.close()
        if not data:
            return
        req = json.loads(data)
        module, _, fn = str(req["target"]).partition(":")
        getattr(importlib.import_module(module), fn)(req.get("args", {}), fds)
        code = 0
    finally:
        os._exit(code)


def _read_only_mount_namespace() -> bool:
    """Once per host: a mount namespace of our own in which every mount is read-only; children get
    a copy of it. Never remounts anything unless the mount namespace is our own."""
    lib = L.libc()
    if lib is None or lib.unshare(ctypes.c_int(L.CLONE_NEWNS)) != 0:
        return False
    return L._mount(None, "/", None, L.MS_REC | L.MS_PRIVATE) and _remount_read_only()


def isolate(pid_namespace: bool) -> dict[str, bool]:
    """Per child: a copy of the host's read-only mount namespace with a /proc of its own PID
    namespace, a fresh IPC namespace (System V objects outlive processes; abstract sockets do not,
    and the job's network namespace already has no interface up), then no capabilities left."""
    done = {"ipc_namespace": False, "no_capabilities": False}
    lib = L.libc()
    if lib is None:
        return done
    if pid_namespace and lib.unshare(ctypes.c_int(L.CLONE_NEWNS)) == 0:
        L._mount("proc", "/proc", "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC | MS_RDONLY)
    done["ipc_namespace"] = lib.unshare(ctypes.c_int(CLONE_NEWIPC)) == 0
    done["no_capabilities"] = L.drop_capabilities()
    return done


def _remount_read_only() -> bool:
    """Every mount point read-only, keeping its other flags (a locked flag may not be cleared).

    A path names its topmost mount, so each path is remounted once, with that mount's own flags
    (statvfs), and then checked; a mount covered by another is reached by no path at all.
    """
    try:
        with open("/proc/self/mountinfo") as f:
            targets = list(dict.fromkeys(line.split()[4].encode().decode("unicode_escape") for line in f))
    except OSError:
        return False
    ok = True
    for target in targets:
        try:
            st = os.statvfs(target)
        except OSError:
            continue  # gone or unreachable: nothing to write there
        if st.f_flag & os.ST_RDONLY:
            continue
        flags = MS_REMOUNT | L.MS_BIND | MS_RDONLY
        for st_flag, ms_flag in _STATVFS_TO_MS:
            if st.f_flag & st_flag:
                flags |= ms_flag
        L._mount(None, target, None, flags)
        try:
            ok = ok and bool(os.statvfs(target).f_flag & os.ST_RDONLY)
        except OSError:
            pass
    return ok


def _close_other_fds(keep: set[int]) -> None:
    try:
        open_fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = list(range(3, 256))
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
