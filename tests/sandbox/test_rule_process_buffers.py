"""Kernel memory a rule process can pin in pipes and sockets (outside its RLIMIT_AS), bounded by its
descriptors: the rule process lowers RLIMIT_NOFILE before the rule loads (`rule_process.limit_open_files`),
and the kernel caps descriptors in flight in unix sockets per uid at the sender's RLIMIT_NOFILE.

The static check is off, so the descriptor limit, not the checker, is what holds. Before the limit, a
rule process had the job's 256 descriptors, and a reviewer's held 64 MiB in pipes and 27 MiB in
socketpairs.
"""

from __future__ import annotations

import ast
import errno
import os

import pytest

from optforge import sandbox

# the bound docs/security.md states: the rule process's RLIMIT_NOFILE, soft and hard, is the 9 descriptors
# `serve` holds (stdio, the memfd and its two mappings' descriptors, three pipe ends) + OPEN_FILES_HEADROOM (8)
LIMIT = 17
OBJECTS = 3 * LIMIT - 1  # 50: held (LIMIT) + in flight (LIMIT, plus one message of at most LIMIT - 1)

# Opens pipes (grown to pipe-max-size) and socketpairs (the sender's buffer raised to wmem_max), fills
# each and closes its writing end, so one descriptor keeps the data; when no descriptor is left it sends
# all it holds to itself over a socketpair (in flight, out of its table), closes them and goes on. It
# first closes every descriptor it does not need (the trainer's pipes, stdio) for more room.
HOARDER = '''
import fcntl, os, resource, socket, sys
LR = 1e-3
CAP = 96  # above the bound, and low enough not to pin GiBs of memory where the bound does not hold


def _fill(fd):
    os.set_blocking(fd, False)
    chunk, n = b"x" * 65536, 0
    try:
        while True:
            n += os.write(fd, chunk)
    except OSError:  # full (EAGAIN), or no buffer memory left
        return n


def _new_object(facts):
    kind = "pipe" if facts["pipes"] <= facts["sockets"] else "socket"
    try:
        if kind == "pipe":
            keep, w = os.pipe()
            try:
                fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ; capped by fs.pipe-max-size
            except OSError:
                pass
        else:
            a, b = socket.socketpair()
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)  # capped by net.core.wmem_max
            w, keep = a.detach(), b.detach()
    except OSError:
        return None
    facts[kind + "_bytes"] += _fill(w)
    facts[kind + "s"] += 1
    os.close(w)
    return keep


def init(p, ctx):
    facts = {"limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1], "pipes": 0, "sockets": 0,
             "pipe_bytes": 0, "socket_bytes": 0, "in_flight": 0, "stopped_by": "the cap"}
    carrier, inbox = socket.socketpair()
    frame = sys._getframe()
    while frame.f_code.co_name != "serve":
        frame = frame.f_back
    keep = {frame.f_locals["err_w"], carrier.fileno(), inbox.fileno()}  # err_w carries this report
    for fd in range(min(facts["limit"], 1024)):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    held = []
    while facts["pipes"] + facts["sockets"] < CAP:
        fd = _new_object(facts)
        if fd is not None:
            held.append(fd)
            continue
        if not held:
            facts["stopped_by"] = "no descriptor"
            break
        try:
            socket.send_fds(carrier, [b"x"], held)
        except OSError as e:
            facts["stopped_by"] = e.strerror
            break
        facts["in_flight"] += len(held)
        for fd in held:
            os.close(fd)
        held = []
    raise RuntimeError(repr(facts))


def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def _sysctl(path: str) -> int:
    with open("/proc/sys/" + path) as f:
        return int(f.read())


def test_pipes_and_sockets_of_a_rule_process_stop_at_its_descriptor_bound():
    """Checker off: a rule that opens and fills as many pipes and socketpairs as it can, and puts them
    in flight to get past its descriptor table, stops at 3 x 17 - 1 = 50 of them (17: its RLIMIT_NOFILE),
    each holding at most pipe-max-size (pipe) or twice wmem_max (socket). Before, it had 256 descriptors
    and stopped only at the rule's own cap of 96 objects."""
    runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
    res = sandbox.run(HOARDER, "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=120, static_check=False))
    assert res.ok, (res.reason, res.exception, res.stderr_tail[-2000:])
    if not res.value["rule_layers"].get("no_capabilities"):
        # CAP_SYS_RESOURCE or CAP_SYS_ADMIN would lift the in-flight cap (too_many_unix_fds)
        pytest.skip("the rule process keeps its capabilities here")
    message = res.value["failure"]["message"]
    facts = ast.literal_eval(message.removeprefix("RuntimeError: "))
    objects = facts["pipes"] + facts["sockets"]
    assert objects <= OBJECTS and facts["in_flight"] <= 2 * LIMIT - 1, facts
    assert facts["limit"] <= LIMIT, facts
    assert facts["stopped_by"] == os.strerror(errno.ETOOMANYREFS), facts  # the in-flight cap, per uid
    assert facts["pipes"] > 0 and facts["sockets"] > 0, facts
    assert facts["pipe_bytes"] <= facts["pipes"] * _sysctl("fs/pipe-max-size"), facts
    # a socket's send buffer is twice the wmem_max it may ask for; the last packet may pass it
    assert facts["socket_bytes"] <= facts["sockets"] * (2 * _sysctl("net/core/wmem_max") + (64 << 10)), facts


FORKER = '''
import os, threading
LR = 1e-3

def init(p, ctx):
    facts = {}
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        facts["fork"] = "started"
    except OSError as e:
        facts["fork"] = e.strerror
    try:
        t = threading.Thread(target=int)
        t.start()
        t.join()
        facts["thread"] = "started"
    except RuntimeError as e:
        facts["thread"] = str(e)
    raise RuntimeError(repr(facts))

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_a_rule_process_can_start_no_process_or_thread():
    """Checker off: the descriptor bound above is per process, and a rule process that could fork would
    get it again in every child (up to the job's 256 processes); its RLIMIT_NPROC of 1 refuses every
    fork and thread. Before, both started."""
    runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
    res = sandbox.run(FORKER, "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=120, static_check=False))
    assert res.ok, (res.reason, res.exception, res.stderr_tail[-2000:])
    if not res.layers.get("unprivileged"):
        pytest.skip("the job stays host root here, which RLIMIT_NPROC exempts")
    facts = ast.literal_eval(res.value["failure"]["message"])
    assert facts == {"fork": os.strerror(errno.EAGAIN), "thread": "can't start new thread"}, facts


# A listening socket and a datagram socket, each offered the filled buffers of up to 16 senders that
# then close: whatever the receiver's queue takes stays held by that one descriptor.
QUEUER = '''
import socket
LR = 1e-3
SENDERS = 16


def _sender(kind):
    s = socket.socket(socket.AF_UNIX, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)  # capped by net.core.wmem_max, doubled
    s.setblocking(False)
    return s


def _fill(s):
    n = 0
    try:
        while True:
            n += s.send(b"x" * 65536)
    except OSError:
        return n


def init(p, ctx):
    facts = {}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(b"\\0optforge-listen-probe")
    listener.listen(SENDERS)
    queued = held = 0
    for _ in range(SENDERS):
        s = _sender(socket.SOCK_STREAM)
        try:
            s.connect(b"\\0optforge-listen-probe")
        except OSError:  # the listener's queue is full
            s.close()
            break
        queued += 1
        held += _fill(s)
        s.close()
    facts["listen"] = (queued, held)
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\\0optforge-dgram-probe")
    queued = held = 0
    for _ in range(SENDERS):
        s = _sender(socket.SOCK_DGRAM)
        try:  # half the send buffer: the largest datagram the kernel builds in one piece
            held += s.sendto(b"y" * (s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2), b"\\0optforge-dgram-probe")
        except OSError:  # the receiver's queue is full
            s.close()
            break
        queued += 1
        s.close()
    facts["dgram"] = (queued, held)
    raise RuntimeError(repr(facts))


def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_a_rule_processs_listening_or_datagram_socket_queues_one_closed_sender():
    """Checker off: a queued connection or datagram keeps its sender's buffer after the sender closed, so a
    listening socket could hold its whole backlog of filled connections (`net.core.somaxconn`, 4096) and a
    datagram socket `net.unix.max_dgram_qlen` + 1 datagrams on one descriptor, past the descriptor bound.
    The rule host's network namespace has both at 0: each takes one. Before: all 16 connections (126 MiB
    with wmem_max at 4 MiB) and 11 datagrams."""
    runs = [{"task": "smoke_quad", "lr": 1e-3, "seed": 0, "steps": 2, "horizon": 20, "eval_steps": [2], "weight_decay": 0.0}]
    res = sandbox.run(QUEUER, "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs}, sandbox.RULE_POLICY,
                      sandbox.Limits(timeout_s=120, static_check=False))
    assert res.ok, (res.reason, res.exception, res.stderr_tail[-2000:])
    rule_layers = res.value["rule_layers"]
    if not rule_layers.get("user_namespace"):
        pytest.skip("no user namespace for the rule host here, so no network namespace of its own")
    facts = ast.literal_eval(res.value["failure"]["message"])
    buffer = 2 * _sysctl("net/core/wmem_max") + (64 << 10)
    (connections, listen_bytes), (datagrams, dgram_bytes) = facts["listen"], facts["dgram"]
    assert connections == 1 and listen_bytes <= buffer, facts
    assert datagrams == 1 and dgram_bytes <= buffer, facts
    assert rule_layers["no_socket_queues"], rule_layers
