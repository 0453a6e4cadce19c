"""A clean host process that forks one isolated child per request, for untrusted code that must be
kept apart from the trusted process that drives it.

The trusted process (inside a sandbox job, already under its namespaces, uid and limits) calls
`RuleHost.start()` before it holds anything worth stealing. The host is a fork of it at that moment:
it never loads untrusted code and holds no model or data. It enters a user namespace, makes a network
namespace of its own and every mount read-only once; then it keeps one spare child ready (an
intermediate process that opens a fresh PID namespace and forks the child, which isolates itself and
blocks) and hands the trusted side its end of that child's socketpair, so a request goes straight to
the child with its message and file descriptors. The child:

- is PID 1 of its own PID namespace (it sees and can signal nothing else; whatever it starts dies
  with it), with its own /proc;
- sees every mount read-only (the host's own mount namespace, made once): it has no writable path,
  so nothing it writes can reach a later child;
- has its own IPC namespace, with every System V limit at zero: it can make no shared memory
  segment, message queue or semaphore set, so none holds memory outside its RLIMIT_AS (abstract Unix
  sockets die with their process, and the sandbox job's network namespace has no interface up); and
  it cannot make a user namespace, in which it could make another IPC namespace with the default
  limits;
- shares the host's network namespace (made once, no interface up), in which a listening or datagram
  unix socket queues one connection or datagram of a sender that is not its peer: a queued one keeps
  the sender's buffer after the sender closed, kernel memory outside RLIMIT_AS;
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

_MSG_BYTES = 1 << 16


class HostError(RuntimeError):
    """The host process died or broke its protocol (infrastructure, not the child's doing)."""


@dataclass
class Child:
    """One forked child, as the trusted side sees it: `pid` is the intermediate process, which exits
    when the child does (its exit code is the child's, or 128 + the signal that killed it).
    `layers`: user_namespace, read_only_mounts, no_socket_queues, pid_namespace, ipc_namespace,
    ipc_limits, no_user_namespaces, no_capabilities."""

    pid: int
    pidfd: int
    layers: dict[str, bool] = field(default_factory=dict)


class RuleHost:
    """Trusted-side handle of the host process. Not thread-safe: one caller drives it."""

    def __init__(self, pid: int, sock: socket.socket, layers: dict[str, bool]):
        self.pid, self._sock, self.layers = pid, sock, layers
        self._exits: dict[int, int] = {}
        self._forgotten: set[int] = set()
        self._spare: tuple[int, socket.socket] | None = None  # (pid, our end of its socketpair)

    @classmethod
    def start(cls) -> "RuleHost":
        """Fork the host now. Call it before building any model or loading any data.

        The caller becomes non-dumpable: no child may ptrace it or read its /proc/<pid>/mem.
        """
        L.undumpable()
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
        L.drop_rule_host_grants()  # the host keeps its own /proc copy and enters the namespace; the trainer needs neither
        host = cls(pid, parent, {})
        host.layers = host._next().get("layers", {})
        return host

    def _next(self) -> dict[str, Any]:
        """Read one message of the host's; record a child's exit or a new spare as it arrives."""
        data, fds, _, _ = socket.recv_fds(self._sock, _MSG_BYTES, 1)
        if not data:
            raise HostError("the rule host process is gone")
        msg = json.loads(data)
        if "exit" in msg:
            self._record_exit(msg)
        elif "spare" in msg:
            self._spare = (int(msg["spare"]), socket.socket(fileno=fds[0]))
        return msg

    def spawn(self, target: str, args: dict[str, Any], fds: list[int]) -> Child:
        """Start a child that calls `target` ("module:function") as function(args, fds) and exits.

        `fds` are passed to the child (the caller keeps its own copies). The function runs after
        isolation; its return ends the child with code 0, an exception with code 70.

        The host keeps one spare child forked and isolated ahead of time, and has given us its end
        of the spare's socketpair: the request goes straight to the spare, with no round trip
        through the host (which only hears that the spare was taken, and forks the next one).
        """
        while self._spare is None:
            self._next()
        (pid, conn), self._spare = self._spare, None
        try:
            socket.send_fds(conn, [json.dumps({"target": target, "args": args}).encode()], fds)
            raw = conn.recv(_MSG_BYTES)  # what isolation held, sent by the spare when it was ready
            layers = json.loads(raw) if raw else {}
        except (OSError, ValueError):  # a spare that died: its pidfd says so, the host its exit code
            layers = {}
        finally:
            conn.close()
        self._sock.send(json.dumps({"taken": pid}).encode())
        layers = {str(k): bool(v) for k, v in layers.items()} if isinstance(layers, dict) else {}
        return Child(pid, os.pidfd_open(pid), layers)

    def wait(self, child: Child) -> int:
        """Block until `child` has ended; its exit code (128 + signal number if it was killed)."""
        while child.pid not in self._exits:
            self._next()
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
        """Stop the host (it kills any child still running, the spare too) and reap it."""
        if self._spare is not None:
            self._spare[1].close()
            self._spare = None
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
    queues = _network_namespace_without_queues()
    read_only = _read_only_mount_namespace()
    base = {"user_namespace": userns, "read_only_mounts": read_only, "no_socket_queues": queues}
    sock.send(json.dumps({"layers": base}).encode())
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    live: dict[int, int] = {}  # pidfd -> pid
    spare = _fork_spare(sock, base)  # isolated and waiting before it is needed
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
                    data = sock.recv(_MSG_BYTES)
                except OSError:
                    data = b""
                if not data:  # the trusted side is gone: nothing of ours may outlive it
                    return
                if int(json.loads(data).get("taken", -1)) != spare:
                    continue
                # the trusted side handed the spare its request: watch it, and make the next one
                pidfd = os.pidfd_open(spare)
                live[pidfd] = spare
                poller.register(pidfd, select.POLLIN)
                spare = _fork_spare(sock, base)
    finally:
        for pid in [*live.values(), spare]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _fork_spare(host_sock: socket.socket, layers: dict[str, bool]) -> int:
    """Fork the next child (isolated ahead of its request, blocked on its own socketpair) and hand our
    end of that socketpair to the trusted side, which sends the child its request. Returns its pid."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        host_sock.close()
        ours.close()
        _intermediate(theirs, layers)
    theirs.close()
    try:
        socket.send_fds(host_sock, [json.dumps({"spare": pid}).encode()], [ours.fileno()])
    finally:
        ours.close()
    return pid


def _enter_user_namespace() -> bool:
    """A user namespace of our own, with our uid mapped to root in it: the children get capabilities
    over the namespaces they create, and none over anything outside them. Root of the namespace
    because the kernel lets only the root uid of the user namespace that owns an IPC namespace set
    its System V limits (`isolate`); the uid outside, and every file access, stay the job's."""
    lib = L.libc()
    if lib is None:
        return False
    # without root on the host the job made it while it held CAP_SETFCAP (`layers.prepare_user_namespace`):
    # a namespace made now could not map its root onto the job's uid 0
    if L.enter_prepared_user_namespace():
        return True
    uid, gid = os.getuid(), os.getgid()
    if lib.unshare(ctypes.c_int(L.CLONE_NEWUSER)) != 0:
        return False
    # through the job's writable copy of /proc (`proc_write`): the job's own /proc is read-only by now;
    # the host stays undumpable (RuleHost.start): no ptrace or /proc/<pid>/mem on it from a child
    return L.map_root_to(uid, gid)


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
        L.close_fds_except({0, 1, 2, conn.fileno()})
        conn.send(json.dumps(layers).encode())  # queued for the host to read at hand-over
        data, fds, _, _ = socket.recv_fds(conn, _MSG_BYTES, 16)
        conn.close()
        if not data:
            return
        req = json.loads(data)
        # the user keyrings are per uid (every child of this host shares them), and the child before this
        # one may have left keys there: emptied now, once it has ended and before this one's code runs
        if not L.clear_user_keyrings():
            raise PermissionError("the user keyring could not be emptied: an earlier rule process locked it")
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
    # no writable path at all: what one child writes can reach no later child
    return L._mount(None, "/", None, L.MS_REC | L.MS_PRIVATE) and L.read_only_root(())


# per network namespace: the longest queue of a listening socket (listen() caps its backlog here) and of
# an unconnected datagram socket. Each queued connection or datagram keeps its sender's buffer (up to
# twice net.core.wmem_max) after the sender closed, so one descriptor could hold thousands of them
SOCKET_QUEUES = {"net/core/somaxconn": "0", "net/unix/max_dgram_qlen": "0"}


def _network_namespace_without_queues() -> bool:
    """Once per host: a network namespace of our own (no interface up, like the job's; abstract unix
    sockets of its own) in which a listening socket queues one connection and a datagram socket one
    datagram from a socket that is not its peer (the kernel's check is `length > limit`). Written
    through the job's writable /proc, which shows the network namespace of the writer."""
    lib = L.libc()
    if lib is None or lib.unshare(ctypes.c_int(L.CLONE_NEWNET)) != 0:
        return False
    return all([L.proc_write("sys/" + key, value) for key, value in SOCKET_QUEUES.items()])


def isolate(pid_namespace: bool) -> dict[str, bool]:
    """Per child: a copy of the host's read-only mount namespace with a /proc of its own PID
    namespace, a fresh IPC namespace (System V objects outlive processes; abstract sockets do not,
    and the job's network namespace already has no interface up) with every System V limit at zero,
    no user namespace to be made, then no capabilities left.

    The limits are written through the job's writable copy of /proc (`layers.keep_writable_proc`),
    which the child closes here: it stays root of the user namespace that owns its IPC namespace, which
    the kernel lets write those limits again, so it must have no writable /proc when the rule loads."""
    done = {"ipc_namespace": False, "ipc_limits": False, "no_user_namespaces": False, "no_capabilities": False}
    lib = L.libc()
    if lib is None:
        return done
    if pid_namespace and lib.unshare(ctypes.c_int(L.CLONE_NEWNS)) == 0:
        L._mount("proc", "/proc", "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC | L.MS_RDONLY)
    done["ipc_namespace"] = L.ipc_namespace()
    done["ipc_limits"] = done["ipc_namespace"] and L.zero_ipc_limits()
    # per user namespace, and ours (the host's) is where a child would make one: none may be made, or a
    # rule could make a user namespace and in it an IPC namespace with the default limits
    done["no_user_namespaces"] = L.proc_write("sys/user/max_user_namespaces", "0")
    L.drop_writable_proc()
    # kernel keyrings belong to no namespace of ours: a session keyring of its own (not the job's)
    L.new_session_keyring()
    done["no_capabilities"] = L.drop_capabilities()
    return done
