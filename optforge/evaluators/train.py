"""The training loop every rule runs through, and the trusted validation of its snapshots.

`train_rule` runs inside the sandbox (an untrusted process): it builds the problem without
validation data, trains with the harness schedule and returns parameter snapshots at the eval
points. `validation_curve` runs in the trusted process: it rebuilds the problem with validation
data, loads each snapshot and measures the loss itself, so a rule cannot report its own score.

Schedule (the same for every rule, baselines included):
    lr_t = lr * min(1, (t+1)/warmup) * (0.1 + 0.9 * 0.5 * (1 + cos(pi * progress)))
with warmup = 5 % of total_steps and progress running from 0 after warmup to 1 at total_steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from optforge.rule import ROLES, Rule, RuleOptimizer

if TYPE_CHECKING:
    from optforge.evaluators.remote_rule import RemoteRuleSource

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.1
EXPLODE_FACTOR = 1e6
"""A loss above EXPLODE_FACTOR * max(|first loss|, 1) counts as diverged (the run stops)."""


@dataclass
class RunTrace:
    """What one training run produced. `snapshots[k]` are the weights after k updates."""

    train_loss: list[float]
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    diverged_at: int | None = None  # updates applied when a non-finite/exploded value was seen
    step_seconds: float = 0.0  # mean optimizer.step() wall time
    state_bytes: int = 0  # optimizer state (tensors only) at the end
    steps_run: int = 0  # updates applied


def lr_factor(step: int, total_steps: int) -> float:
    """Schedule multiplier for 0-based `step`: linear warmup over 5 %, then cosine down to 10 %."""
    warmup = max(1, int(round(WARMUP_FRACTION * total_steps)))
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def eval_points(T: int, n: int = 16) -> list[int]:
    """`n` log-spaced evaluation steps ending at T (fewer when T is small), starting near T/50."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    start = max(1.0, T / 50.0)
    if n <= 1 or start >= T:
        return [T]
    ratio = (T / start) ** (1.0 / (n - 1))
    pts = sorted({min(T, max(1, int(round(start * ratio**i)))) for i in range(n)})
    if pts[-1] != T:
        pts.append(T)
    return pts


def role_groups(problem) -> list[dict]:
    """Param groups of a problem, one per role, in ROLES order (the role is what a rule sees)."""
    grouped: dict[str, list[torch.Tensor]] = {}
    for name, p in problem.model.named_parameters():
        grouped.setdefault(problem.roles[name], []).append(p)
    return [{"params": grouped[r], "role": r} for r in ROLES if r in grouped]


def _all_finite(params: list[torch.Tensor]) -> bool:
    # one reduction over all tensors: a NaN or inf anywhere makes the total non-finite
    total = torch.stack([p.detach().sum() for p in params]).sum()
    return bool(torch.isfinite(total))


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for st in opt.state.values():
        for key, v in st.items():
            if isinstance(v, torch.Tensor) and key != "_train_point":
                total += v.numel() * v.element_size()
    return total


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def train_rule(
    task,
    rule: Rule | RemoteRuleSource,
    lr: float,
    seed: int,
    steps: int | None = None,
    eval_steps: list[int] | None = None,
    total_steps: int | None = None,
    weight_decay: float = 0.0,
) -> RunTrace:
    """Train `task` (seed `seed`) with `rule` at base lr `lr` for `steps` updates.

    `rule` is a loaded `Rule` (trusted sources) or a `RemoteRuleSource`, whose rule runs in a rule
    process forked for this run (candidates: this process never loads them).
    `steps` defaults to task.steps; a smaller value is a prefix of the same run (the schedule
    still spans `total_steps`, which defaults to max(task.steps, steps)). `eval_steps` (numbers of
    updates; 0 = the initial weights) default to `eval_points(total_steps)` up to `steps`, plus
    `steps`. Snapshots are taken at the rule's eval point (optimizer.eval()). The run stops at
    once on a non-finite loss or parameter, or an exploded loss, and records `diverged_at`.
    `weight_decay` > 0 applies decoupled decay p *= 1 - lr_t * wd (RuleOptimizer's, outside the rule).
    """
    torch.set_num_threads(1)
    steps = int(task.steps if steps is None else steps)
    total = int(total_steps if total_steps is not None else max(task.steps, steps))
    if steps < 1 or total < 1:
        raise ValueError(f"steps and total_steps must be >= 1, got steps={steps}, total_steps={total}")
    if steps > total:
        raise ValueError(f"steps={steps} exceeds total_steps={total}; the schedule would end before the run")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    if eval_steps is None:
        wanted = [e for e in eval_points(total) if e <= steps]
        if not wanted or wanted[-1] != steps:
            wanted.append(steps)
    else:
        wanted = sorted({int(e) for e in eval_steps})
        if wanted and (wanted[0] < 0 or wanted[-1] > steps):
            raise ValueError(f"eval_steps must lie in [0, {steps}], got {eval_steps}")

    problem = task.build(seed, validation=False)
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    groups = role_groups(problem)
    with started(rule, groups) as active:
        opt = RuleOptimizer(groups, active, lr=lr, total_steps=total, weight_decay=weight_decay)
        trace = _train_loop(problem, opt, lr, steps, total, set(wanted))
    if trace.diverged_at is not None:
        log.debug("task %s seed %d lr %.3g diverged at %d", task.name, seed, lr, trace.diverged_at)
    return trace


def _train_loop(problem, opt: RuleOptimizer, lr: float, steps: int, total: int, eval_set: set[int]) -> RunTrace:
    model = problem.model
    params = [p for p in model.parameters()]
    trace = RunTrace(train_loss=[])
    if 0 in eval_set:
        trace.snapshots[0] = _snapshot(model)
    step_time = 0.0
    first: float | None = None
    for step in range(steps):
        lr_t = lr * lr_factor(step, total)
        for group in opt.param_groups:
            group["lr"] = lr_t
        opt.zero_grad(set_to_none=True)
        loss = problem.train_loss(step)
        value = float(loss.detach())
        if first is None:
            first = value
        if not math.isfinite(value) or abs(value) > EXPLODE_FACTOR * max(abs(first), 1.0):
            trace.diverged_at = step
            trace.train_loss.append(value if math.isfinite(value) else math.inf)
            break
        loss.backward()
        t0 = time.perf_counter()
        opt.step()
        step_time += time.perf_counter() - t0
        trace.train_loss.append(value)
        trace.steps_run = step + 1
        if not _all_finite(params):
            trace.diverged_at = step + 1
            break
        if step + 1 in eval_set:
            opt.eval()
            trace.snapshots[step + 1] = _snapshot(model)
            opt.train()
    trace.step_seconds = step_time / max(1, trace.steps_run)
    trace.state_bytes = _state_bytes(opt)
    return trace


def started(rule, groups: list[dict]):
    """A context giving the rule RuleOptimizer runs: a loaded `Rule` as it is, or, for a rule that
    runs in another process (it has `start`, e.g. RemoteRuleSource), one started for these groups."""
    start = getattr(rule, "start", None)
    return start(groups) if start is not None else contextlib.nullcontext(rule)


@torch.no_grad()
def validation_curve(task, seed: int, snapshots: dict[int, dict[str, torch.Tensor]]) -> dict[int, float]:
    """TRUSTED: the validation loss at every snapshot, measured on a problem rebuilt with validation.

    Snapshots come from an untrusted process, so their names, shapes and values are checked; a
    snapshot with non-finite weights gets math.inf.
    """
    problem = task.build(seed, validation=True)
    model = problem.model
    live = dict(model.named_parameters())
    out: dict[int, float] = {}
    for step in sorted(snapshots, key=int):
        snap = snapshots[step]
        if set(snap) != set(live):
            missing, extra = sorted(set(live) - set(snap)), sorted(set(snap) - set(live))
            raise ValueError(
                f"snapshot at step {step} of task '{task.name}' does not match the model: "
                f"missing {missing}, unexpected {extra}"
            )
        finite = True
        for name, p in live.items():
            value = torch.as_tensor(snap[name])
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"snapshot at step {step}: '{name}' has shape {tuple(value.shape)}, expected {tuple(p.shape)}"
                )
            p.copy_(value.to(p.dtype))
            finite = finite and bool(torch.isfinite(p).all())
        if not finite:
            out[int(step)] = math.inf
            continue
        problem.prepare_eval()
        out[int(step)] = problem.val_loss()
    return out
