"""`rule_probe`: what a rule does on a fixed probe, computed in the sandbox (a strategy's service,
`StrategyContext.rule_probe`).

The probe is one tensor per parameter role, plus `tiny` (a vector whose gradients have RMS 1e-8, so
constants that act only on tiny gradients, such as Adam's eps, show), each with a fixed seeded
parameter and a fixed sequence of gradients of RMS 1 (1e-8 for `tiny`), the same for every rule. The
rule runs PROBE_STEPS steps at step size PROBE_LR; its update (the parameter's change) at each step
is returned per tensor. The rule runs in its own process, as in the training job (the trusted side
only feeds gradients and reads parameters); nothing about a task is in the probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

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


class ProbeFailed(RuntimeError):
    """The rule could not be probed (rejected, crashed, timed out); the message says why."""


@dataclass(frozen=True)
class Probe:
    """A rule's probe updates: `updates[name]` has shape (PROBE_STEPS, *tensor shape), float64; `lr` is
    the step size the probe passed (ctx.lr)."""

    updates: Mapping[str, np.ndarray]
    lr: float


def probe_job(source: str, payload: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """TRUSTED job (runs in the sandbox worker): the rule's updates on the probe, as buffers."""
    import torch

    from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError
    from optforge.evaluators.train import started
    from optforge.rule import RuleOptimizer
    from optforge.sandbox.rule_host import RuleHost

    torch.set_num_threads(1)
    host = RuleHost.start()  # first: the host must be forked while this process holds no task
    try:
        rule = RemoteRuleSource(host, source, "candidate")
        gen = torch.Generator().manual_seed(int(payload.get("seed", 20260)))
        params, grads, groups = {}, {}, []
        for name, role, shape, rms in PROBE_TENSORS:
            p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64).float())
            params[name] = p
            grads[name] = [torch.randn(shape, generator=gen).mul_(rms) for _ in range(PROBE_STEPS)]
            groups.append({"params": [p], "role": role})
        updates = {name: np.zeros((PROBE_STEPS, *p.shape)) for name, p in params.items()}
        try:
            with started(rule, groups) as active:
                opt = RuleOptimizer(groups, active, lr=PROBE_LR, total_steps=PROBE_STEPS)
                for step in range(PROBE_STEPS):
                    before = {name: p.detach().clone() for name, p in params.items()}
                    for name, p in params.items():
                        p.grad = grads[name][step].clone()
                    opt.step()
                    for name, p in params.items():
                        updates[name][step] = (p.detach() - before[name]).double().numpy()
        except RuleProcessError as e:
            return {"failure": str(e.record.get("exception") or e)[:2000]}, {}
        return {"lr": PROBE_LR, "names": list(updates)}, updates
    finally:
        host.close()


def rule_probe(source: str, *, timeout_s: float = 60.0) -> Probe:
    """Probe `source` in the sandbox (static check included). Raises ProbeFailed with the reason."""
    from optforge import sandbox

    res = sandbox.run(source, JOB, {}, sandbox.RULE_POLICY, sandbox.Limits(timeout_s=timeout_s))
    value = res.value if isinstance(res.value, dict) else {}
    status = str(getattr(res.status, "value", res.status))
    if status != "ok" or "failure" in value:
        why = value.get("failure") or res.exception or res.reason
        raise ProbeFailed(f"the rule could not be probed ({status}): {' '.join(str(why).split())[:600]}")
    names = [n for n, *_ in PROBE_TENSORS]
    try:
        updates = {n: np.asarray(res.buffers[n], dtype=np.float64) for n in names}
    except KeyError as e:
        raise ProbeFailed(f"the probe job returned no updates for {e}") from e
    for (name, _, shape, _), u in zip(PROBE_TENSORS, updates.values()):
        if u.shape != (PROBE_STEPS, *shape):
            raise ProbeFailed(f"the probe job returned updates of shape {u.shape} for {name}")
    return Probe(updates, float(value.get("lr", PROBE_LR)))
