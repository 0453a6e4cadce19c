"""A rule that runs in another process: the trusted trainer's half and the rule process's half.

The trainer keeps `RuleOptimizer` (schedule, per-tensor step count `t`, global `grad_norm`,
decoupled weight decay, `p += delta`); its rule is a `RemoteRule`, whose `batch` sends every tensor
of a step in one round trip to a rule process forked by `RuleHost` (optforge.sandbox.rule_host).
That process loads the candidate and calls its `init`, `update` and `eval_point`; it never sees the
model, the data or the loss, only each tensor's `p` (read-only), `g` and `ctx`.

Transport (both made by the trainer, inherited by the rule process, nothing named):
- one memfd, sealed against growing and shrinking: a read-only part for the rule process [request header | source | p of each tensor]
  and a writable part [g of each tensor | out of each tensor] (a rule may scribble on g, never on p:
  its mapping of p is PROT_READ, so writing p in place kills it with SIGSEGV);
- two pipes, "go" (trainer -> rule) and "done" (rule -> trainer), each end held by one side only; the
  rule process blocks in read(2), the trainer polls "done" with the rule process's pidfd so a dead
  rule process never hangs it, and writes "go" without blocking;
- a pipe for the rule process's one failure record (JSON, bounded), written just before it exits.

What the rule process returns is checked there against the tensor it belongs to: a delta or
eval_point of the wrong type, shape, dtype or device ends the run with reason `bad_delta`; the
trainer only ever reads `out` as a tensor of the parameter's own shape and dtype.

This module is the trainer's half; the rule process's half is `optforge.evaluators.rule_process`, and
the memfd layout they share is `optforge.evaluators.rule_memfd`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from optforge.evaluators.rule_memfd import (
    _HEAD, _NORM_OFFSET, _OPS, _RECORD_BYTES, OP_STOP, OP_UPDATE, REPLY_NEED_NORM, Layout, Views, _request,
)
from optforge.evaluators.rule_process import serve  # noqa: F401 - in sys.modules before the rule host forks
from optforge.roles import default_role
from optforge.rule import literal_constants
from optforge.sandbox.rule_host import Child, RuleHost

SERVE = "optforge.evaluators.rule_process:serve"
"""The rule process's entry; its module is imported above so the rule host's fork already holds it."""


class RuleProcessError(Exception):
    """The rule process failed; `record` holds reason, type, message, line, line_text, traceback."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
        super().__init__(f"{record.get('type', 'Error')}: {record.get('message', '')}")

    @property
    def reason(self) -> str:
        return str(self.record.get("reason", "exception"))


class RemoteRule:
    """The trainer's handle of one rule process, serving every tensor of one run.

    Duck-types `Rule` for `RuleOptimizer`: `name`, `lr`, `eval_point` (truthy when the rule defines
    one) and `batch(op, args)`, which runs `op` on every tensor's arguments in one round trip.
    """

    def __init__(self, host: RuleHost, source: str, name: str, hparams: dict, groups: list[dict], exact_rss: bool = False):
        self.name, self.source, self.hparams = name, source, dict(hparams or literal_constants(source))
        params = [(gi, pi, p, g.get("role") or default_role(p)) for gi, g in enumerate(groups) for pi, p in enumerate(g["params"])]
        for _, _, p, _ in params:
            if p.device.type != "cpu":
                raise ValueError(f"the split rule path runs on CPU tensors only; got a parameter on {p.device}")
        encoded = source.encode("utf-8")
        self.layout = Layout(tuple(tuple(p.shape) for _, _, p, _ in params),
                             tuple(str(p.dtype).removeprefix("torch.") for _, _, p, _ in params),
                             tuple(r for *_, r in params), tuple((gi, pi) for gi, pi, _, _ in params), len(encoded))
        self._index = {id(p): k for k, (_, _, p, _) in enumerate(params)}
        self._host = host
        self.child: Child | None = None
        self._views: Views | None = None
        self._memfd = self._go = self._done = self._err_r = -1
        self._norm_ctx = None
        self._rule_pid: int | None = None
        try:
            self._start(encoded, name, exact_rss)
        except BaseException:
            # a rule that fails to load (or any failure before this handle is returned) releases all it
            # holds here: the caller has no handle to close, and a probe job starts hundreds of these
            self.close()
            raise

    def _start(self, encoded: bytes, name: str, exact_rss: bool) -> None:
        """Make the memfd and pipes, fork the rule process, wait until it has loaded the rule."""
        self._memfd = os.memfd_create("optforge-rule", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self._memfd, self.layout.ro_bytes + self.layout.rw_bytes)
        # the rule process holds this fd read-write: shrinking it would kill this process with SIGBUS
        # at its next read of the mapping, growing it would hold tmpfs memory outside its RLIMIT_AS
        fcntl.fcntl(self._memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        self._views = Views(self._memfd, self.layout, rule_side=False)
        off = self.layout.source_offset
        self._views.ro[off: off + len(encoded)] = encoded
        # "go" and "done" are pipes, not eventfds: the rule process holds only go's read end and done's write
        # end, so it can neither fill a counter our write would block on nor read our wake-up away, and
        # the non-blocking flags of our ends are ours alone (an eventfd is one file both sides hold)
        theirs: list[int] = []
        try:
            go_r, self._go = os.pipe2(os.O_CLOEXEC)
            theirs.append(go_r)
            self._done, done_w = os.pipe2(os.O_CLOEXEC)
            theirs.append(done_w)
            self._err_r, err_w = os.pipe2(os.O_CLOEXEC)
            theirs.append(err_w)
            os.set_blocking(self._go, False)
            os.set_blocking(self._done, False)
            self.child = self._host.spawn(SERVE, {"name": name, "layout": self.layout.to_json(), "exact_rss": exact_rss},
                                          [self._memfd, go_r, done_w, err_w])
        finally:
            for fd in theirs:  # the rule process holds its own copies now (or there is none)
                os.close(fd)
        self._poll = select.poll()
        self._poll.register(self._done, select.POLLIN)
        self._poll.register(self.child.pidfd, select.POLLIN)
        self._wait()  # the rule loaded; the reply word says whether it has an eval_point
        self.eval_point = True if self._views.reply[0] == 1 else None
        self._every = list(range(self.layout.n))
        self._p_and_g = self._views.p + self._views.g

    @property
    def lr(self) -> float:
        return float(self.hparams["LR"])

    def rss_bytes(self) -> int:
        """Resident anonymous memory of the rule process (its own allocations, not the shared memfd),
        read here from /proc; never reported by the rule process itself."""
        if self._rule_pid is None:
            self._rule_pid = _child_of(self.child.pid)
        with open(f"/proc/{self._rule_pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        raise OSError("/proc/<pid>/status has no RssAnon line on this kernel")

    def cpu_seconds(self) -> float:
        """CPU time the rule process's threads have run so far (ns-resolution scheduler counters from
        /proc, read here, never reported by the rule process; a thread that has exited is not counted)."""
        if self._rule_pid is None:
            self._rule_pid = _child_of(self.child.pid)
        total = 0
        for tid in os.listdir(f"/proc/{self._rule_pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{self._rule_pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Keep the rule process stopped (SIGSTOP, which it cannot catch) for the block: while another
        rule is timed (`job.step_seconds_pair`) this one runs no code, not even a signal handler on a
        timer of its own, and it has no other process that could (RLIMIT_NPROC 1 in the rule process)."""
        if self._rule_pid is None:
            self._rule_pid = _child_of(self.child.pid)
        os.kill(self._rule_pid, signal.SIGSTOP)
        try:
            _wait_stopped(self._rule_pid)  # the signal is asynchronous: a process on another CPU runs on briefly
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._rule_pid, signal.SIGCONT)

    @property
    def layers(self) -> dict[str, bool]:
        return dict(self.child.layers) if self.child else {}

    def batch(self, op: str, args: list[tuple]) -> list[Any]:
        """Run `op` ("init", "update" or "eval_point") for each tensor's RuleOptimizer arguments:
        init (p, ctx), update (p, g, state, ctx), eval_point (p, state, ctx). Returns, per tensor, a
        state placeholder (init) or a view of the rule's output (valid until the next call)."""
        v, n = self._views, len(args)
        idx = [self._index[id(a[0])] for a in args]
        ctxs = [a[-1] for a in args]
        code = _OPS[op]
        T = -1 if not args or ctxs[0].T is None else int(ctxs[0].T)
        _request(n).pack_into(v.ro, 0, code, n, T, 0.0, *idx, *[c.t for c in ctxs], *[c.lr for c in ctxs])
        every = idx == self._every  # every tensor, in order (each step of a run whose tensors all have grads)
        if args:
            # every tensor's p (and g) into the memfd in one dispatch, not one copy_ per tensor
            src = [a[0] for a in args]
            if code == OP_UPDATE:
                src += [a[1] for a in args]
                dst = self._p_and_g if every else [v.p[k] for k in idx] + [v.g[k] for k in idx]
            else:
                dst = v.p if every else [v.p[k] for k in idx]
            torch._foreach_copy_(dst, src)
        self._norm_ctx = ctxs[0] if code == OP_UPDATE and ctxs else None
        self._roundtrip()
        if op == "init":
            return [{"remote_state": k} for k in idx]
        return list(v.out) if every else [v.out[k] for k in idx]

    def _roundtrip(self) -> None:
        self._signal()
        self._wait()

    def _signal(self) -> None:
        try:
            os.write(self._go, b"\1")
        except BlockingIOError:  # alive but no longer reading its requests (a full pipe): never block here
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.child.pidfd, signal.SIGKILL)
            raise RuleProcessError(self._failure()) from None
        except OSError:  # gone (EPIPE): its exit says why
            raise RuleProcessError(self._failure()) from None

    def _wait(self) -> None:
        while True:
            ready = {fd for fd, _ in self._poll.poll()}
            if self._done in ready:
                if not self._drain_done():
                    continue
                if self._views.reply[0] != REPLY_NEED_NORM:
                    return
                # the rule read ctx.grad_norm: the global norm over the step's gradients, computed
                # here on the trusted side, once per step and only for rules that use it
                ctx = self._norm_ctx
                struct.pack_into("<d", self._views.ro, _NORM_OFFSET, ctx.grad_norm if ctx is not None else 0.0)
                self._views.reply[0] = 0
                self._signal()
                continue
            if self.child is not None and self.child.pidfd in ready:
                raise RuleProcessError(self._failure())

    def _drain_done(self) -> bool:
        """Read what the rule process wrote on "done" (one byte a reply, or whatever more it wrote); False
        if nothing was there. Its end closed: "done" is no longer polled, only its pidfd."""
        got = False
        while True:
            try:
                data = os.read(self._done, 4096)
            except BlockingIOError:
                return got
            if not data:  # its end closed: it is dying (or closed it); its pidfd says when it has ended
                self._poll.unregister(self._done)
                return got
            if len(data) < 4096:  # all there was (the usual one byte): no second read(2) a step
                return True
            got = True

    def _failure(self) -> dict[str, Any]:
        """The rule process's failure record, or what its exit says when it left none."""
        code = self._host.wait(self.child)
        raw = b""
        os.set_blocking(self._err_r, False)
        with contextlib.suppress(BlockingIOError, OSError):
            raw = os.read(self._err_r, _RECORD_BYTES + 1)
        try:
            rec = json.loads(raw) if raw else None
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            return {k: (str(v)[:4000] if v is not None and k != "line" else v) for k, v in rec.items()
                    if k in ("reason", "type", "message", "line", "line_text", "traceback")}
        if code > 128:
            sig = code - 128
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = ("; p is read-only in the rule process: return the change as the delta instead of writing "
                    "to p in place") if sig == signal.SIGSEGV else ""
            return {"reason": f"signal:{sig}", "type": "RuleProcessDied",
                    "message": f"the rule process died by signal {sig} ({name}){hint}"}
        return {"reason": f"exit:{code}", "type": "RuleProcessDied",
                "message": f"the rule process exited with code {code} in the middle of a run"}

    def close(self) -> None:
        """Stop the rule process and release the memfd, its mappings and the pipes. Safe to call twice,
        and on a handle whose start failed part way (it releases what was made).

        STOP, then SIGKILL at once: a rule that ignores STOP (it replaced its own exit, or is stuck in
        its code) must not live on into the next run, where it could hand over what it learned. The
        rule process is its PID namespace's init, so killing it ends everything it started there."""
        child, self.child = self.child, None
        if child is not None and child.pidfd >= 0:
            if self._go >= 0:
                _HEAD.pack_into(self._views.ro, 0, OP_STOP, 0, -1, 0.0)
                with contextlib.suppress(OSError):
                    os.write(self._go, b"\1")
            with contextlib.suppress(OSError, ValueError, StopIteration):
                os.kill(self._rule_pid if self._rule_pid is not None else _child_of(child.pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
            self._host.forget(child)
        views, self._views = self._views, None
        if views is not None:
            views.close()
        for attr in ("_memfd", "_go", "_done", "_err_r"):
            fd = getattr(self, attr)
            setattr(self, attr, -1)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _wait_stopped(pid: int, timeout_s: float = 1.0) -> bool:
    """Wait until process `pid` shows as stopped in /proc (state T), at most `timeout_s`; False if it did
    not (gone, or the kernel slow to deliver), in which case the caller goes on as before."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return True
        except (OSError, IndexError):
            return False
        time.sleep(0.0001)
    return False


def _child_of(pid: int) -> int:
    """The one process whose parent is `pid` (the rule process under its PID-namespace parent)."""
    try:  # the kernel's own list (CONFIG_PROC_CHILDREN): one read, not a scan of every process
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        if children:
            return int(children[0])
    except OSError:
        pass
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                return int(d)
    raise ProcessLookupError(f"no child of process {pid}: the rule process is gone")


@dataclass(frozen=True)
class RemoteRuleSource:
    """A rule source to be run in a rule process of `host`: `start(groups)` forks one per run."""

    host: RuleHost
    source: str
    name: str = "candidate"
    exact_rss: bool = False  # the rule process returns freed memory at once (slower; for measuring state)
    layers: dict[str, bool] = field(default_factory=dict, compare=False)  # held in every rule process so far
    cpu_s: list[float] | None = field(default=None, compare=False)  # a list: each run's rule-process CPU seconds go here

    @property
    def lr(self) -> float:
        return float(literal_constants(self.source)["LR"])

    @contextlib.contextmanager
    def start(self, groups: list[dict]) -> Iterator[RemoteRule]:
        rule = RemoteRule(self.host, self.source, self.name, {}, groups, self.exact_rss)
        for key, held in rule.layers.items():
            self.layers[key] = self.layers.get(key, True) and held
        try:
            yield rule
        finally:
            if self.cpu_s is not None and rule.child is not None:
                with contextlib.suppress(OSError, ValueError):  # gone already: a failed run records nothing
                    self.cpu_s.append(rule.cpu_seconds())
            rule.close()


