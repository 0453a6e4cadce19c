"""The keys of `strategy:` for `name: symbolic`, checked at load time (frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from optforge.config import ConfigError, build_strategy_params
from optforge.search.symbolic import warmstarts


@dataclass(frozen=True)
class SymbolicParams:
    """Keys of `strategy:` for `name: symbolic`. P = 1000 and T = 2 are the regularized-evolution
    defaults recalled from Chen et al. 2023 (arXiv 2302.06675), warm-started from AdamW."""

    warm_start: tuple[str, ...] = ("adamw",)  # seeds whose programs form the initial population
    population: int = 1000  # P: population size (aging removes the oldest beyond it)
    tournament: int = 2  # T: members drawn per tournament
    state_slots: int = 0  # total state slots k; warm starts with fewer get extra zero slots (unused at first)
    phase_evaluations: int | None = None  # proposals per phase (warm start included); null = until the engine stops
    restarts: int = 1  # independent searches from the warm start
    best_restarts: int = 0  # further searches started from the best program so far
    simplify_evaluations: int = 0  # budget of the post-search simplification (0 = only dead code removal)
    simplify_tolerance: float = 0.05  # fitness a simplification may lose against the program it simplifies
    hparam_only: bool = False  # mutate constants only (the paper's baseline)
    max_len: int = 40  # most statements in a program
    const_prob: float = 0.2  # chance a new scalar argument is a fresh N(0,1) constant
    max_tries: int = 200  # mutation attempts before trying another parent

    def __post_init__(self) -> None:
        known = warmstarts.names()
        if not self.warm_start:
            raise ConfigError(f"strategy.warm_start is empty; name at least one of {', '.join(known)}")
        for name in self.warm_start:
            if name not in known:
                raise ConfigError(f"strategy.warm_start: no program for seed '{name}'; available: {', '.join(known)}")
        for key, low in (("population", 1), ("tournament", 1), ("restarts", 1), ("max_len", 1), ("max_tries", 1)):
            if getattr(self, key) < low:
                raise ConfigError(f"strategy.{key}={getattr(self, key)!r} must be >= {low}")
        for key in ("state_slots", "best_restarts", "simplify_evaluations"):
            if getattr(self, key) < 0:
                raise ConfigError(f"strategy.{key}={getattr(self, key)!r} must be >= 0")
        if self.state_slots > 8:
            raise ConfigError(f"strategy.state_slots={self.state_slots!r} must be <= 8")
        if self.phase_evaluations is not None and self.phase_evaluations < 1:
            raise ConfigError(f"strategy.phase_evaluations={self.phase_evaluations!r} must be >= 1 or null")
        if self.phase_evaluations is None and (self.restarts > 1 or self.best_restarts or self.simplify_evaluations):
            raise ConfigError(
                "strategy.phase_evaluations must be set when restarts > 1, best_restarts > 0 or "
                "simplify_evaluations > 0 (each phase needs a length)"
            )
        if self.simplify_tolerance < 0:
            raise ConfigError(f"strategy.simplify_tolerance={self.simplify_tolerance!r} must be >= 0")
        if not 0.0 <= self.const_prob <= 1.0:
            raise ConfigError(f"strategy.const_prob={self.const_prob!r} must be in [0, 1]")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "SymbolicParams":
        """Checked like the run config: unknown keys and wrong types raise ConfigError naming `strategy.<key>`."""
        return build_strategy_params(cls, params)

    @property
    def phases(self) -> int:
        return self.restarts + self.best_restarts

    @property
    def total_evaluations(self) -> int | None:
        """Most proposals the whole strategy makes (None when unbounded)."""
        if self.phase_evaluations is None:
            return None
        return self.phases * self.phase_evaluations + self.simplify_evaluations
