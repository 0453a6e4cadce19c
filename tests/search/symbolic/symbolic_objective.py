"""Shared helpers for the symbolic-search tests: a cheap real objective and a deterministic driver."""

from __future__ import annotations

import math

import torch

from optforge.rule import RuleOptimizer
from optforge.search.symbolic.interpret import as_rule
from optforge.search.symbolic.program import Program, parse
from optforge.types import FLOOR, EvaluationResult, Status


def quadratic_loss(program: Program, steps: int = 30) -> float:
    """Final loss of `program` (interpreted, trusted) on an ill-conditioned quadratic with its optimum off 0.

    The program's own LR is used, like the evaluator's lr multiplier 1.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.logspace(-1.5, 0.5, 6, dtype=torch.float64).reshape(6, 1)
    target = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    x = torch.zeros(6, 4, dtype=torch.float64, requires_grad=True)
    opt = RuleOptimizer([{"params": [x], "role": "hidden_matrix"}], as_rule(program), total_steps=steps)
    for _ in range(steps):
        loss = 0.5 * (a * (x - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if not math.isfinite(float(loss.detach())):
            return math.inf
    return float((0.5 * (a * (x - target) ** 2).sum()).detach())


def quadratic_result(source: str, ref_loss: float) -> EvaluationResult:
    """An EvaluationResult whose fitness is log2(ref_loss / loss), clipped like the real scores."""
    loss = quadratic_loss(parse(source))
    if not math.isfinite(loss):
        return EvaluationResult(Status.DIVERGED, feedback="diverged on the quadratic")
    fit = math.log2(ref_loss / max(loss, 1e-300))
    return EvaluationResult(Status.OK, metrics={"fitness": max(FLOOR, min(2.0, fit))})


def drive(strategy, objective, *, lag: int = 2, n: int = 2, max_iters: int = 400, log: list | None = None,
          inflight: list | None = None) -> list:
    """Propose n at a time; observe the oldest in proposal order once more than `lag` are in flight
    (all of them when nothing new comes). Returns what is still in flight after `max_iters` rounds."""
    inflight = [] if inflight is None else inflight
    for _ in range(max_iters):
        new = strategy.propose(n)
        if log is not None:
            log.extend(new)
        inflight += new
        if not inflight:
            break
        while inflight and (len(inflight) > lag or not new):
            c = inflight.pop(0)
            strategy.observe(c, objective(c))
    return inflight
