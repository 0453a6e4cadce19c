"""Measure what each task of a suite costs: ms per training step with AdamW on one torch thread.

    python -m optforge.evaluators.tasks.costs [--suite train] [--chunk 20] [--repeats 3]

Per task it times `repeats` chunks of `chunk` steps (forward, backward, AdamW step) in process CPU
time and keeps the fastest chunk: with one torch thread, CPU time is the compute the run needs and
is far less disturbed by other processes on a busy machine than wall time. It multiplies by the
task's steps to give the training compute of one (lr, seed) run. Validation is not included.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from optforge import seeds
from optforge.rule import RuleOptimizer

from .suites import get_suite


@dataclass(frozen=True)
class TaskCost:
    task: str
    family: str
    steps: int
    batch_size: int
    params: int
    ms_per_step: float

    @property
    def seconds_per_run(self) -> float:
        return self.ms_per_step * self.steps / 1000.0


def measure(task, chunk: int = 20, repeats: int = 3) -> TaskCost:
    """The fastest of `repeats` timed chunks of `chunk` AdamW steps on task seed 0."""
    from optforge.evaluators.train import role_groups  # local: train imports nothing from here

    torch.set_num_threads(1)
    problem = task.build(0, validation=False)
    opt = RuleOptimizer(role_groups(problem), seeds.load("adamw"), lr=1e-3, total_steps=task.steps)
    step = 0

    def run(n: int) -> float:
        nonlocal step
        t0 = time.process_time()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            problem.train_loss(step).backward()
            opt.step()
            step += 1
        return time.process_time() - t0

    run(3)  # warm-up
    best = min(run(chunk) for _ in range(repeats))
    n_params = sum(p.numel() for p in problem.model.parameters())
    return TaskCost(task.name, task.family, task.steps, task.batch_size, n_params, 1000.0 * best / chunk)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="train")
    ap.add_argument("--chunk", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    suite = get_suite(args.suite)
    print(f"suite {suite.name} v{suite.version}: AdamW, 1 torch thread, fastest of {args.repeats} x {args.chunk} steps, CPU time")
    print("| task | family | params | batch | steps | ms/step | s per (lr, seed) |")
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for task in suite.tasks:
        c = measure(task, args.chunk, args.repeats)
        total += c.seconds_per_run
        print(f"| {c.task} | {c.family} | {c.params:,} | {c.batch_size} | {c.steps} | {c.ms_per_step:.2f} | {c.seconds_per_run:.2f} |")
    print(f"| **total** | | | | | | **{total:.2f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
