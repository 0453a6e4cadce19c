"""`rule_probe`: what a rule does on a fixed probe, computed in the sandbox (a strategy's service,
`StrategyContext.rule_probe`).

The probe is one tensor per parameter role, plus `tiny` (a vector whose gradients have RMS 1e-8, so
constants that act only on tiny gradients, such as Adam's eps, show), each with a fixed seeded
parameter and a fixed sequence of gradients of RMS 1 (1e-8 for `tiny`), the same for every rule. The
rule runs PROBE_STEPS steps at step size PROBE_LR; its update (the parameter's change) at each step
is returned per tensor. The rule runs in its own process, as in the training job (the trusted side
only feeds gradients and reads parameters); nothing about a task is in the probe.

`rule_probes(sources)` probes many rules in one sandbox job: the job's start and its rule host are paid
once, and each source still gets a rule process of its own, started after the previous source's has
ended (`probe_job`). `rule_probe(source)` is the batch of one. benchmarks/rule_probe_batch.py compares
the two ways.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

JOB = "optforge.search.probe:probe_job"
PROBE_STEPS = 5
PROBE_LR = 1e-3
PROBE_TENSORS = (
    ("hidden_matrix", "hidden_matrix", (8, 6), 1.0),
    ("conv", "conv", (4, 2, 3, 3), 1.0),
    ("embedding", "embedding", (10, 4), 1.0),
    ("head", "head", (5, 8), 1.0),
    ("vector", "vector", (6,), 1.0),
    ("scalar", "scalar", (), 1.0),
    ("tiny", "vector", (6,), 1e-8),
)
"""(name, role, shape, gradient RMS) of each probe tensor."""
_JOB_S = 30.0
"""Wall time a probe job may take beside its rules' own (`timeout_s` each): its start, torch's import."""
_BATCH = 256
"""Sources per probe job at most. Nothing in the job grows with the sources it has probed (each rule
process, its memfd and pipes are gone before the next source starts, a rule that fails at load
included: tests/evaluators/test_remote_rule_leaks.py), so this bounds only what one lost job costs:
each of its sources is then probed again in a job of its own."""
_REAP_S = 5.0
"""How long a source's rule process may take to be gone after its close before the next one starts."""


class ProbeFailed(RuntimeError):
    """The rule could not be probed (rejected, crashed, timed out); the message says why."""


@dataclass(frozen=True)
class Probe:
    """A rule's probe updates: `updates[name]` has shape (PROBE_STEPS, *tensor shape), float64; `lr` is
    the step size the probe passed (ctx.lr)."""

    updates: Mapping[str, np.ndarray]
    lr: float


def probe_job(_source: str, payload: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """TRUSTED job (runs in the sandbox worker): the updates of each rule of `payload["sources"]` on the
    probe, as buffers `"<i>/<tensor name>"`; value `{"lr", "results": [{} or {"failure": reason}]}`.

    One rule host serves the whole batch, and each source runs in its own rule process forked from it
    (its own PID and IPC namespaces, every mount read-only), one at a time: a source's process is dead,
    and everything it started with it, before the next source's process is handed its source. A rule
    process that runs past `payload["timeout_s"]` is killed, and only that source fails."""
    import torch

    import optforge.evaluators.remote_rule  # noqa: F401 - the rule host's fork holds the rule process's code
    from optforge.sandbox.rule_host import RuleHost

    torch.set_num_threads(1)
    host = RuleHost.start()  # first: the host must be forked while this process holds no task
    try:
        start, grads = _probe_inputs(int(payload.get("seed", 20260)))
        results, buffers = [], {}
        for i, source in enumerate(payload["sources"]):
            updates = _probe_one(host, str(source), start, grads, float(payload.get("timeout_s", 60.0)))
            if isinstance(updates, str):
                results.append({"failure": updates})
                continue
            results.append({})
            buffers.update({f"{i}/{name}": u for name, u in updates.items()})
        return {"lr": PROBE_LR, "results": results}, buffers
    finally:
        host.close()


probe_job.starts_rule_host = True  # type: ignore[attr-defined]  # it keeps what RuleHost.start needs (sandbox.job_process)


def _probe_inputs(seed: int) -> tuple[dict, dict]:
    """(starting parameter of each probe tensor, its PROBE_STEPS gradients): the same for every rule."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    start, grads = {}, {}
    for name, _, shape, rms in PROBE_TENSORS:
        start[name] = torch.randn(shape, generator=gen, dtype=torch.float64).float()
        grads[name] = [torch.randn(shape, generator=gen).mul_(rms) for _ in range(PROBE_STEPS)]
    return start, grads


def _probe_one(host: Any, source: str, start: dict, grads: dict, timeout_s: float) -> dict[str, np.ndarray] | str:
    """One rule's updates on the probe, run in its own rule process of `host`; the failure's text if it
    failed. Returns once that process, and with it its PID namespace, is gone."""
    from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError

    watched = _WatchedHost(host, timeout_s)
    try:
        return probe_updates(RemoteRuleSource(watched, source, "candidate"), start, grads)
    except RuleProcessError as e:
        if watched.killed.is_set():
            return f"the rule ran past its {timeout_s:g} s of probe time and was killed"
        return str(e)[:2000]
    finally:
        if not watched.done():  # never start the next source beside it: the job fails, each source goes alone
            raise RuntimeError(f"a rule process was still running {_REAP_S:g} s after it was stopped")


def probe_updates(rule: Any, start: dict, grads: dict) -> dict[str, np.ndarray]:
    """The updates of `rule` on the probe inputs (`_probe_inputs`): a RemoteRuleSource, or a loaded Rule
    (in this process: trusted code only)."""
    import torch

    from optforge.evaluators.train import started
    from optforge.rule import RuleOptimizer

    params = {name: torch.nn.Parameter(p.clone()) for name, p in start.items()}
    groups = [{"params": [params[name]], "role": role} for name, role, *_ in PROBE_TENSORS]
    updates = {name: np.zeros((PROBE_STEPS, *p.shape)) for name, p in params.items()}
    with started(rule, groups) as active:
        opt = RuleOptimizer(groups, active, lr=PROBE_LR, total_steps=PROBE_STEPS)
        for step in range(PROBE_STEPS):
            before = {name: p.detach().clone() for name, p in params.items()}
            for name, p in params.items():
                p.grad = grads[name][step].clone()
            opt.step()
            for name, p in params.items():
                updates[name][step] = (p.detach() - before[name]).double().numpy()
    return updates


class _WatchedHost:
    """The rule host as one source's rule uses it: the rule process it spawns is killed `timeout_s` after
    its start (its load included), and `done()` returns only once that process has ended."""

    def __init__(self, host: Any, timeout_s: float):
        self._host, self._timeout_s = host, timeout_s
        self.killed = threading.Event()
        self._timer: threading.Timer | None = None
        self._parent = self._rule = -1  # pidfds: the PID-namespace parent, the rule process

    def spawn(self, target: str, args: dict, fds: list[int]) -> Any:
        child = self._host.spawn(target, args, fds)
        self._parent = os.pidfd_open(child.pid)
        with contextlib.suppress(OSError, ValueError):
            from optforge.evaluators.remote_rule import _child_of

            self._rule = os.pidfd_open(_child_of(child.pid))
        self._timer = threading.Timer(self._timeout_s, self._kill)
        self._timer.start()
        return child

    def wait(self, child: Any) -> int:
        return self._host.wait(child)

    def forget(self, child: Any) -> None:
        self._host.forget(child)

    def _kill(self) -> None:
        self.killed.set()
        # the rule process itself first: it may have cleared the parent-death signal it would die of with
        # its parent; it is its PID namespace's init, so all it started dies with it
        for fd in (self._rule, self._parent):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)

    def done(self) -> bool:
        """Stop the clock; wait (at most _REAP_S) until the rule process has ended (it is its PID
        namespace's init, so every process of that namespace has ended too). False if it has not."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        ended = True
        if self._rule >= 0 or self._parent >= 0:
            ended = bool(select.select([self._rule if self._rule >= 0 else self._parent], [], [], _REAP_S)[0])
        for fd in (self._rule, self._parent):
            if fd >= 0:
                os.close(fd)
        return ended


def rule_probe(source: str, *, timeout_s: float = 60.0) -> Probe:
    """Probe `source` in the sandbox (static check included). Raises ProbeFailed with the reason."""
    probe = rule_probes([source], timeout_s=timeout_s)[0]
    if isinstance(probe, ProbeFailed):
        raise probe
    return probe


def rule_probes(sources: Sequence[str], *, timeout_s: float = 60.0) -> list[Probe | ProbeFailed]:
    """Probe many sources in one sandbox job (`probe_job`), each in its own rule process: a Probe, or the
    ProbeFailed that says why, per source, in order. Each source gets the static check and `timeout_s`
    of its own. If the job as a whole fails (the sandbox lost it, say), each source is probed alone."""
    from optforge import sandbox

    out: list[Probe | ProbeFailed | None] = [None] * len(sources)
    todo = []
    for i, source in enumerate(sources):
        problems = sandbox.check_source(source, sandbox.RULE_POLICY)
        if problems:
            shown = "; ".join(str(p) for p in problems[:8])
            out[i] = ProbeFailed(f"the rule could not be probed (invalid): static check ({sandbox.RULE_POLICY.name} "
                                 f"policy) refused the source: {shown}"[:700])
        else:
            todo.append(i)
    for at in range(0, len(todo), _BATCH):
        batch = todo[at: at + _BATCH]
        # the sources were checked above, each as the sandbox checks a job's source
        limits = sandbox.Limits(timeout_s=_JOB_S + timeout_s * len(batch), static_check=False)
        res = sandbox.run("", JOB, {"sources": [sources[i] for i in batch], "timeout_s": timeout_s},
                          sandbox.RULE_POLICY, limits)
        value = res.value if isinstance(res.value, dict) else {}
        status = str(getattr(res.status, "value", res.status))
        if status != "ok" or len(value.get("results") or ()) != len(batch):
            why = ProbeFailed(f"the rule could not be probed ({status}): "
                              f"{' '.join(str(res.exception or res.reason).split())[:600]}")
            for i in batch:  # one source may have taken the job down: each alone, so only it fails
                out[i] = why if len(batch) == 1 else rule_probes([sources[i]], timeout_s=timeout_s)[0]
            continue
        lr = float(value.get("lr", PROBE_LR))
        for k, (i, result) in enumerate(zip(batch, value["results"])):
            out[i] = _read_probe(k, result, res.buffers, lr)
    return out  # type: ignore[return-value] - every entry is set


def _read_probe(k: int, result: Any, buffers: Mapping[str, Any], lr: float) -> Probe | ProbeFailed:
    """The k-th source's Probe from the job's output, or why there is none."""
    if not isinstance(result, dict) or "failure" in result:
        why = result.get("failure") if isinstance(result, dict) else result
        return ProbeFailed(f"the rule could not be probed (failed): {' '.join(str(why).split())[:600]}")
    updates = {}
    for name, _, shape, _ in PROBE_TENSORS:
        if f"{k}/{name}" not in buffers:
            return ProbeFailed(f"the probe job returned no updates for '{name}'")
        u = np.asarray(buffers[f"{k}/{name}"], dtype=np.float64)
        if u.shape != (PROBE_STEPS, *shape):
            return ProbeFailed(f"the probe job returned updates of shape {u.shape} for {name}")
        updates[name] = u
    return Probe(updates, lr)
