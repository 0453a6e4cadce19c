"""The trusted job that runs INSIDE the sandbox: train a (possibly untrusted) rule on suite tasks.

`run_job(source, payload)` loads the rule, trains each requested run with the shared training loop
and returns JSON (divergence, step time, state bytes, the reported train loss) plus one raw float32
buffer per run holding the parameter snapshots at the eval steps. No validation data exists in this
process: the tasks are built with validation=False, and the trusted side computes validation losses
from the snapshots. On request it also returns a numeric fingerprint of the rule (smoke stage).
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import torch

FINGERPRINT_STEPS = 5
# one fixed tensor per role kind (2-D, conv, embedding, head, 1-D, 0-D)
_FP_SHAPES = (
    ("hidden_matrix", (8, 6)),
    ("conv", (4, 2, 3, 3)),
    ("embedding", (10, 4)),
    ("head", (5, 8)),
    ("vector", (6,)),
    ("scalar", ()),
)


def run_job(source: str, payload: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """Train every run of `payload["runs"]` on suite `payload["suite"]`; see the module docstring."""
    from optforge.evaluators.tasks import get_suite
    from optforge.evaluators.train import train_rule
    from optforge.rule import RuleError, load_rule
    from optforge.sandbox import JobFailure

    torch.set_num_threads(1)
    try:
        rule = load_rule(source, name=payload.get("name", "candidate"))
    except RuleError as e:
        # a rule that does not load is invalid (the contract), not a crash of the job
        raise JobFailure("load_error", str(e)) from e
    tasks = {t.name: t for t in get_suite(payload["suite"]).tasks}
    runs: list[dict] = []
    buffers: dict[str, np.ndarray] = {}
    for i, r in enumerate(payload.get("runs", ())):
        if r["task"] not in tasks:
            raise KeyError(f"task {r['task']!r} is not in suite {payload['suite']!r}")
        t0 = time.perf_counter()
        trace = train_rule(
            tasks[r["task"]],
            rule,
            lr=float(r["lr"]),
            seed=int(r["seed"]),
            steps=int(r["steps"]),
            eval_steps=[int(s) for s in r["eval_steps"]],
            total_steps=int(r["horizon"]),
            weight_decay=float(r.get("weight_decay", 0.0)),
        )
        run_seconds = time.perf_counter() - t0
        steps = sorted(int(s) for s in trace.snapshots)
        names: list[str] = list(trace.snapshots[steps[0]]) if steps else []
        shapes = [list(trace.snapshots[steps[0]][n].shape) for n in names] if steps else []
        if steps:
            rows = [
                torch.cat([trace.snapshots[s][n].detach().reshape(-1).to(torch.float32) for n in names]).numpy()
                for s in steps
            ]
            buffers[f"r{i}"] = np.ascontiguousarray(np.stack(rows), dtype=np.float32)
        losses = list(trace.train_loss)
        runs.append(
            {
                "steps": steps,
                "names": names,
                "shapes": shapes,
                "buffer": f"r{i}" if steps else None,
                "train_loss": [_num(losses[s - 1]) if 0 < s <= len(losses) else None for s in steps],
                "diverged_at": trace.diverged_at,
                "step_seconds": float(trace.step_seconds),
                "state_bytes": int(trace.state_bytes),
                "n_params": int(sum(math.prod(s) for s in shapes)),
                "run_seconds": run_seconds,
            }
        )
    value: dict = {"runs": runs}
    if payload.get("fingerprint"):
        value["fingerprint"] = fingerprint(rule)
    return value, buffers


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def fingerprint(rule) -> str:
    """A hash of what the rule does to fixed tensors over a few steps, rounded to 4 significant digits.

    Functional duplicates (renamed variables, reordered code) get the same fingerprint. Gradients
    depend on the parameters (a fixed quadratic plus fixed noise), so terms in p (weight decay) count.
    """
    from optforge.rule import RuleOptimizer

    gen = torch.Generator().manual_seed(1234)
    params, targets, groups = [], [], []
    for role, shape in _FP_SHAPES:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen) if shape else torch.randn((), generator=gen))
        params.append(p)
        targets.append(torch.randn(shape, generator=gen) if shape else torch.randn((), generator=gen))
        groups.append({"params": [p], "role": role})
    noise = [[torch.randn(p.shape, generator=gen) * 0.1 for p in params] for _ in range(FINGERPRINT_STEPS)]
    opt = RuleOptimizer(groups, rule, total_steps=FINGERPRINT_STEPS)
    digest = hashlib.sha256()
    for step in range(FINGERPRINT_STEPS):
        for p, tgt, nz in zip(params, targets, noise[step]):
            p.grad = (p.detach() - tgt) + nz
        opt.step()
        for p in params:
            for v in p.detach().reshape(-1).tolist():
                digest.update((f"{v:.4g}" if math.isfinite(v) else "nan").encode())
                digest.update(b",")
    return digest.hexdigest()[:16]
