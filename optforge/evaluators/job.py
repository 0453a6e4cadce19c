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
        # the sandbox applied the caller's policy before this process started (or was told not to)
        rule = load_rule(source, name=payload.get("name", "candidate"), policy=None)
    except RuleError as e:
        # a rule that does not load is invalid (the contract), not a crash of the job
        raise JobFailure("load_error", str(e)) from e
    tasks = {t.name: t for t in get_suite(payload["suite"]).tasks}
    runs: list[dict] = []
    buffers: dict[str, np.ndarray] = {}
    step_pairs: dict[str, tuple[float, float]] = {}
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
        if r["task"] not in step_pairs and trace.diverged_at is None:
            step_pairs[r["task"]] = step_seconds_pair(tasks[r["task"]], int(r["seed"]), rule)
        cand_step, adamw_step = step_pairs.get(r["task"], (0.0, 0.0))
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
                "timed_step_seconds": cand_step,
                "adamw_step_seconds": adamw_step,
                "state_bytes": int(trace.state_bytes),
                "n_params": int(sum(math.prod(s) for s in shapes)),
                "run_seconds": run_seconds,
            }
        )
    value: dict = {"runs": runs}
    if payload.get("fingerprint"):
        value["fingerprint"] = fingerprint(rule)
    return value, buffers


def step_seconds_pair(task, seed: int, rule, steps: int = 10, rounds: int = 3) -> tuple[float, float]:
    """(rule, AdamW) optimizer-step seconds on this task's parameters, timed alike in this process.

    Both are timed the same way (same gradients, warm state, interleaved rounds, best round), so the
    step-time ratio does not depend on the machine, its load, or the first step's allocations.
    Returns (0, 0) if the rule fails on the timing gradients; the ratio is then left out.
    """
    from optforge import seeds
    from optforge.evaluators.train import role_groups
    from optforge.rule import RuleOptimizer

    timed = []
    for r in (rule, seeds.load("adamw")):
        problem = task.build(seed, validation=False)
        gen = torch.Generator().manual_seed(0)
        for p in problem.model.parameters():
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype) * 1e-3
        timed.append(RuleOptimizer(role_groups(problem), r, lr=r.lr, total_steps=10**6))
    best = [math.inf, math.inf]
    try:
        for opt in timed:
            opt.step()
        for _ in range(rounds):
            for k, opt in enumerate(timed):
                t0 = time.perf_counter()
                for _ in range(steps):
                    opt.step()
                best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    except Exception:  # noqa: BLE001 - timing only; the training run already judged the rule
        return 0.0, 0.0
    return best[0], best[1]


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
