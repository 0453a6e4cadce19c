"""The records of training runs: what one run is asked to do (`RunSpec`) and what it produced after
trusted validation (`RunOutcome`), and what the lr protocol (protocol.py) knows of a task."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from optforge.evaluators.scoring import running_min

__all__ = ["Execute", "RunOutcome", "RunSpec", "TaskInfo"]


@dataclass(frozen=True)
class RunSpec:
    """One training run: a task at one lr and seed, `steps` long out of a `horizon`-step schedule."""

    task: str
    h: int
    lr: float
    seed: int
    steps: int
    horizon: int
    eval_steps: tuple[int, ...]
    weight_decay: float = 0.0

    def to_payload(self) -> dict:
        return {
            "task": self.task,
            "lr": self.lr,
            "seed": self.seed,
            "steps": self.steps,
            "horizon": self.horizon,
            "eval_steps": list(self.eval_steps),
            "weight_decay": self.weight_decay,
        }


@dataclass
class RunOutcome:
    """What one run produced, after trusted validation."""

    spec: RunSpec
    steps: list[int]  # eval steps reached (a prefix of spec.eval_steps if the run diverged)
    val: list[float]  # trusted validation loss at each reached step
    train_loss: list[float]  # reported by the candidate's process: informative only
    diverged_at: int | None
    step_seconds: float = 0.0
    state_bytes: int = 0
    n_params: int = 0
    run_seconds: float = 0.0  # wall time of the whole run inside the job (cost weights only)
    timed_step_seconds: float = 0.0  # the rule's step time, timed like AdamW's below
    adamw_step_seconds: float = 0.0  # AdamW's step time on the same task, timed in the same job
    trace: dict | None = None  # detail="trace": per-role norms (evaluators/trace.py parse_run_trace)

    @property
    def diverged(self) -> bool:
        return (
            self.diverged_at is not None
            or len(self.steps) < len(self.spec.eval_steps)
            or any(not math.isfinite(v) for v in self.val)
        )

    def best(self) -> float:
        return math.inf if self.diverged or not self.val else min(running_min(self.val))


Execute = Callable[[list[RunSpec]], list[RunOutcome]]


@dataclass(frozen=True)
class TaskInfo:
    """What the protocol needs to know about a task (no model, no data)."""

    name: str
    family: str
    steps: int
