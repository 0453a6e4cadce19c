"""The rule process's half of a remote rule: `serve` runs in the isolated child that `RuleHost` forks
(optforge.sandbox.rule_host). It loads the candidate and answers the trainer's requests through the
memfd (`optforge.evaluators.rule_memfd`) until told to stop; it never sees the model, the data or the
loss. What the rule returns is checked here against its tensor; any failure is written once, as a
bounded JSON record, to the error pipe before the process exits.

Before the rule loads, the process lowers its own limits, which nothing left in it can raise again:
no file written (RLIMIT_FSIZE 0), 8 descriptors beyond those it holds (RLIMIT_NOFILE), no second
process or thread (RLIMIT_NPROC 1). Together they bound the kernel memory its pipes and sockets can
hold outside RLIMIT_AS (docs/security.md, "Pipes and sockets").
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import struct
from typing import Any

import torch

from optforge.evaluators.rule_memfd import (
    _HEAD, _NORM_OFFSET, _RECORD_BYTES, OP_INIT, OP_STOP, OP_UPDATE, REPLY_NEED_NORM, Layout, Views, _body,
)
from optforge.rule import Ctx, RuleError, load_rule
from optforge.rule_optimizer import _bad_delta
from optforge.sandbox.job_process import describe  # the sandbox's own exception record, for the same fields


class _Norm:
    """Stands in for the trainer's per-step shared values in a rule-side Ctx: the global grad norm,
    asked of the trainer on first use in a step (as RuleOptimizer computes it on first use)."""

    __slots__ = ("views", "go", "done", "value")

    def __init__(self, views: Views, go: int, done: int):
        self.views, self.go, self.done, self.value = views, go, done, None

    def grad_norm(self) -> float:
        if self.value is None:
            self.views.reply[0] = REPLY_NEED_NORM
            os.write(self.done, b"\1")
            _read_go(self.go)
            self.value = struct.unpack_from("<d", self.views.ro, _NORM_OFFSET)[0]
        return self.value


class _Zero:
    __slots__ = ()

    def grad_norm(self) -> float:
        return 0.0


_ZERO_NORM = _Zero()


def serve(args: dict[str, Any], fds: list[int]) -> None:
    """Rule-process entry (called by RuleHost in the isolated child): load the rule, serve until STOP."""
    memfd, go, done, err_w = fds
    torch.set_num_threads(1)
    # as in the trainer's process, where RuleOptimizer calls the rule under torch.no_grad()
    torch.set_grad_enabled(False)
    # the rule process writes no file; with a file size limit of 0 it cannot fill a memfd of its
    # own either (tmpfs memory outside its RLIMIT_AS): ftruncate or write past 0 bytes is SIGXFSZ
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    if args.get("exact_rss"):
        _return_freed_memory()
    layout = Layout.from_json(args["layout"])
    name = str(args.get("name", "candidate"))
    views = Views(memfd, layout, rule_side=True)
    # every pipe and socket holds kernel memory outside RLIMIT_AS, and each needs a descriptor (held, or
    # in flight in a unix socket: the kernel caps those per uid at the sender's RLIMIT_NOFILE too)
    limit_open_files(OPEN_FILES_HEADROOM)
    # and no second process or thread, which would get these limits again: the uid counts at least this
    # process and its PID-namespace parent, so a limit of 1 refuses every fork and clone (host root,
    # without the uid switch, is exempt); torch runs single-threaded here (set_num_threads(1) above)
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))

    def fail(e: BaseException, reason: str) -> None:
        rec = describe(e, reason)
        text = json.dumps(rec, default=str)
        if len(text) > _RECORD_BYTES:
            rec["traceback"] = str(rec.get("traceback", ""))[-2000:]
            rec["message"] = str(rec.get("message", ""))[:2000]
            text = json.dumps(rec, default=str)[:_RECORD_BYTES]
        os.write(err_w, text.encode("utf-8", "replace"))
        os._exit(1)

    try:
        # the sandbox applied the caller's policy before the job started (or was told not to)
        rule = load_rule(views.source(), name=name, policy=None)
    except RuleError as e:
        fail(e, "load_error")
    views.reply[0] = 1 if rule.eval_point is not None else 0
    os.write(done, b"\1")
    states: dict[int, dict] = {}
    # per tensor, what does not change between steps: its views, role, shape and dtype
    tensors = [(views.p[k], views.g[k], views.out[k], layout.roles[k], layout.shapes[k], views.p[k].dtype)
               for k in range(layout.n)]
    ro = views.ro
    while True:
        _read_go(go)
        op, n, T, _ = _HEAD.unpack_from(ro, 0)
        if op == OP_STOP:
            return
        norm = _Norm(views, go, done) if op == OP_UPDATE else _ZERO_NORM
        fields = _body(n).unpack_from(ro, _HEAD.size)
        T = None if T < 0 else T
        outs, out_views = [], []
        try:
            for k, t, lr in zip(fields[:n], fields[n: 2 * n], fields[2 * n:]):
                p, g, out_view, role, shape, dtype = tensors[k]
                ctx = Ctx(lr, t, T, role, shape, norm)
                if op == OP_INIT:
                    init = rule.init(p, ctx)
                    if not isinstance(init, dict):
                        gi, pi = layout.where[k]
                        raise RuleError(
                            f"rule '{rule.name}': init must return a dict, got {type(init).__name__} "
                            f"(param {pi} of group {gi}, shape {tuple(p.shape)})"
                        )
                    states[k] = init
                    continue
                out = rule.update(p, g, states[k], ctx) if op == OP_UPDATE else rule.eval_point(p, states[k], ctx)
                # a 0-d or broadcastable tensor would fill `out` through copy_: the exact shape, dtype, device
                if type(out) is not torch.Tensor or out.shape != shape or out.dtype != dtype or not out.is_cpu:
                    gi, pi = layout.where[k]
                    fn = "update" if op == OP_UPDATE else "eval_point"
                    fail(BadDelta(_bad_delta(rule, out, p, gi, pi, fn)), "bad_delta")
                outs.append(out)
                out_views.append(out_view)
            if outs:
                torch._foreach_copy_(out_views, outs)  # one dispatch for every tensor's output
                # the state probe reads this process's RSS between steps: hold no output past its copy
                outs.clear()
        except BaseException as e:  # noqa: BLE001 - anything the rule raises ends the run with its record
            fail(e, "memory" if isinstance(e, MemoryError) else "exception")
        os.write(done, b"\1")


OPEN_FILES_HEADROOM = 8
"""Descriptors a rule process may open beyond those it holds when its rule loads (stdio, the memfd, its
two mappings' descriptors and three pipe ends). torch needs one at a time (cpuinfo reads /proc/cpuinfo
on first use; every seed and the whole symbolic library train with a single one free)."""


def limit_open_files(headroom: int) -> int:
    """Lower RLIMIT_NOFILE, soft and hard (no capability is left to raise it again), to one past the
    highest descriptor this process holds now plus `headroom`. Returns the limit.

    Descriptors are found by asking each number below the current limit (at most 1024 of them), not
    through /proc/self/fd, whose listing would count its own descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(fd for fd in range(min(soft, 1024)) if _is_open(fd))
    limit = highest + 1 + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return limit


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def _read_go(go: int) -> None:
    """Wait for the trainer's next request (one byte on the go pipe); the trainer gone: exit."""
    if not os.read(go, 1):
        os._exit(0)


def _return_freed_memory() -> None:
    """glibc: serve every allocation of 64 KiB or more by mmap and unmap it on free (a fixed threshold,
    not the adaptive one), so resident memory follows the live tensors: what the state probe reads."""
    import ctypes

    from optforge.sandbox.layers import libc

    lib = libc()
    if lib is not None:
        lib.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
        lib.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        lib.malloc_trim(ctypes.c_size_t(0))


class BadDelta(Exception):
    """A rule returned a delta or eval_point that is not a tensor of its parameter's shape, dtype and device."""
