"""The keys of `strategy:` for `name: moh`, checked at load time (frozen dataclass).

Defaults follow MoH's released configs (Shi et al., ICLR 2026, arXiv 2505.20881, `cfg/*.yaml`:
`n_iterations 10`, `pop_size 10`, `max_eval_calls 1000` per subtask), scaled to the CPUs of the
machine when a key is left null (`cpu_defaults`): a reference-sized run evaluates thousands of
rules, which a laptop cannot. Subtasks default to the search suite's task families; weights
default to each subtask's cost (`subtasks.task_cost`), MoH's "larger sizes weigh more".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

REFERENCE = {"n_iterations": 10, "pop_size": 10, "max_evals_per_subtask": 1000}
"""MoH's defaults (cfg/*.yaml), reached at REFERENCE_CPUS cores."""
REFERENCE_CPUS = 64
FLOORS = {"n_iterations": 2, "pop_size": 4, "max_evals_per_subtask": 8}
"""The smallest defaults (one CPU): two outer iterations still exercise self-invocation."""
GROUPINGS = ("family", "task")


def cpu_defaults(cpus: int | None = None) -> dict[str, int]:
    """The defaults of `n_iterations`, `pop_size` and `max_evals_per_subtask` on `cpus` cores
    (default: `os.cpu_count()`): MoH's reference values times cpus / 64, never below FLOORS."""
    n = max(1, int(cpus or os.cpu_count() or 1))
    share = min(1.0, n / REFERENCE_CPUS)
    return {k: max(FLOORS[k], round(v * share)) for k, v in REFERENCE.items()}


@dataclass(frozen=True)
class MohConfig:
    """Keys of `strategy:` for `name: moh`; one documented line per field."""

    subtasks: dict | None = None  # {name: [task, ...]} of the search suite; null: grouped by `group_by`
    group_by: str = "family"  # the default subtasks: one per task "family", or one per "task"
    weights: str | dict = "cost"  # "cost" (each subtask's summed task cost), "equal", or {subtask: weight}
    n_iterations: int | None = None  # outer iterations (self-invocations); null: scaled to CPU (cpu_defaults)
    pop_size: int | None = None  # rules kept per subtask, and procedures kept; null: scaled to CPU
    max_evals_per_subtask: int | None = None  # utility calls one procedure run may make on its subtask; null: scaled
    llm_calls_per_run: int = 20  # LLM calls one procedure run may make (its sub-budget of the run's LLM budget)
    cpu_s: float = 60.0  # CPU seconds of one procedure run's own work
    wall_s: float = 300.0  # wall seconds of one procedure run, not counting time while a call is out
    max_calls: int = 200  # calls (LLM and utility) one procedure run may make
    seed_procedures: tuple[str, ...] = ("evolve", "polca")  # built-in seeds (optforge/search/moh/seeds) or .py paths
    meta_procedure: str = "meta"  # the first meta-optimizer: a built-in seed name or a .py path
    seed_rules: tuple[str, ...] = ("adamw",)  # seed rules (optforge/seeds) every subtask's population starts from
    search_seeds: tuple[int, ...] | None = None  # seeds of the subtask rollouts; null: the suite's Suite.search_seeds
    rollout_seeds: int = 1  # search seeds each subtask evaluation runs on (the first of the pool)

    def __post_init__(self) -> None:
        if self.group_by not in GROUPINGS:
            raise ValueError(f"strategy.group_by={self.group_by!r} must be one of {', '.join(GROUPINGS)}")
        if self.subtasks is not None:
            if not self.subtasks:
                raise ValueError("strategy.subtasks must name at least one subtask, or be null for the suite's families")
            clean = {}
            for name, tasks in self.subtasks.items():
                tasks = [tasks] if isinstance(tasks, str) else tasks
                if not isinstance(tasks, (list, tuple)) or not tasks or not all(isinstance(t, str) for t in tasks):
                    raise ValueError(f"strategy.subtasks.{name} must be a non-empty list of task names, got {tasks!r}")
                clean[str(name)] = tuple(tasks)
            object.__setattr__(self, "subtasks", clean)
        if isinstance(self.weights, str):
            if self.weights not in ("cost", "equal"):
                raise ValueError(f"strategy.weights={self.weights!r} must be 'cost', 'equal' or {{subtask: weight}}")
        else:
            bad = {k: v for k, v in self.weights.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf")}
            if bad or not self.weights:
                raise ValueError(f"strategy.weights: each weight must be a finite number > 0, got {bad or self.weights!r}")
            if self.subtasks is not None and set(self.weights) != set(self.subtasks):
                raise ValueError(f"strategy.weights names {sorted(self.weights)} but strategy.subtasks names "
                                 f"{sorted(self.subtasks)}; give one weight per subtask")
            object.__setattr__(self, "weights", {str(k): float(v) for k, v in self.weights.items()})
        for key in ("n_iterations", "pop_size", "max_evals_per_subtask"):
            value = getattr(self, key)
            if value is None:
                object.__setattr__(self, key, cpu_defaults()[key])
            elif value < 1:
                raise ValueError(f"strategy.{key}={value!r} must be >= 1 or null (scaled to CPU)")
        for key in ("llm_calls_per_run", "max_calls", "rollout_seeds"):
            if getattr(self, key) < 1:
                raise ValueError(f"strategy.{key}={getattr(self, key)!r} must be >= 1")
        for key in ("cpu_s", "wall_s"):
            if not 0 < getattr(self, key) < float("inf"):
                raise ValueError(f"strategy.{key}={getattr(self, key)!r} must be a finite number of seconds > 0")
        for key in ("seed_procedures", "seed_rules"):
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else tuple(value))
        if not self.seed_rules:
            raise ValueError("strategy.seed_rules must name at least one seed rule (e.g. [adamw])")
        from optforge import seeds

        for name in self.seed_rules:
            if name not in seeds.names():
                raise ValueError(f"strategy.seed_rules: unknown seed '{name}'; known seeds: {', '.join(seeds.names())}")
        from optforge.search.moh.procedures import load_procedure

        for name in (*self.seed_procedures, self.meta_procedure):
            load_procedure(name)  # raises ValueError naming the seed or file
        if self.search_seeds is not None:
            pool = tuple(int(s) for s in self.search_seeds)
            if len(pool) < self.rollout_seeds or len(set(pool)) != len(pool):
                raise ValueError(f"strategy.search_seeds={list(pool)!r} must be distinct and at least "
                                 f"rollout_seeds={self.rollout_seeds}, or null for the suite's pool")
            object.__setattr__(self, "search_seeds", pool)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "MohConfig":
        """Checked like the run config: unknown keys and wrong types raise ValueError naming `strategy.<key>`."""
        from optforge.config import build_strategy_params

        return build_strategy_params(cls, params)
