"""Configuration of the evolve strategy: the `strategy` mapping of a run config, minus `name`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from optforge.config import ConfigError, build_strategy_params

EDIT_MODES = ("diff", "full", "sample")


@dataclass(frozen=True)
class EvolveConfig:
    """One documented line per field; checked in __post_init__."""

    warm_start: tuple[str, ...] = ("adamw",)  # seeds (optforge.seeds names) evaluated first, as the initial population
    islands: int = 2  # independent sub-populations
    migration_interval: int = 8  # migrate after every this many finished evaluations (0: never)
    migration_size: int = 1  # best programs of each island copied to the next island (ring)
    edit: str = "sample"  # "diff" (SEARCH/REPLACE), "full" (rewrite), or "sample" (diff with diff_prob)
    diff_prob: float = 0.6  # P(diff) when edit == "sample"
    selection_sharpness: float = 10.0  # lambda of the sigmoid over (fitness - island median)
    novelty_weight: float = 0.5  # weight of the code-novelty bonus in parent sampling
    inspirations_top: int = 2  # best programs of the island shown besides the parent
    inspirations_diverse: int = 1  # random other programs shown for diversity
    references: int = 2  # reference rules (seeds) shown that do well where the parent lags
    failures_in_prompt: int = 3  # recent failed attempts of the island shown in the prompt
    max_proposals: int | None = None  # stop after this many LLM proposals (None: until a budget stops)
    max_llm_errors: int = 5  # stop after this many consecutive failed LLM calls
    template_dir: str | None = None  # a folder of prompt .txt files overriding the bundled ones

    def __post_init__(self) -> None:
        from optforge import seeds

        known = seeds.names()
        for name in self.warm_start:
            if name not in known:
                raise ConfigError(f"strategy.warm_start: unknown seed '{name}'; known seeds: {', '.join(known)}")
        if not self.warm_start:
            raise ConfigError("strategy.warm_start must name at least one seed (e.g. [adamw]); evolve needs a parent")
        if self.islands < 1:
            raise ConfigError(f"strategy.islands={self.islands!r} must be >= 1")
        if self.migration_interval < 0 or self.migration_size < 0:
            raise ConfigError("strategy.migration_interval and strategy.migration_size must be >= 0")
        if self.edit not in EDIT_MODES:
            raise ConfigError(f"strategy.edit={self.edit!r} must be one of {', '.join(EDIT_MODES)}")
        if not 0.0 <= self.diff_prob <= 1.0:
            raise ConfigError(f"strategy.diff_prob={self.diff_prob!r} must be in [0, 1]")
        for key in ("selection_sharpness", "novelty_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"strategy.{key}={getattr(self, key)!r} must be >= 0")
        for key in ("inspirations_top", "inspirations_diverse", "references", "failures_in_prompt"):
            if getattr(self, key) < 0:
                raise ConfigError(f"strategy.{key}={getattr(self, key)!r} must be >= 0")
        if self.max_proposals is not None and self.max_proposals < 0:
            raise ConfigError(f"strategy.max_proposals={self.max_proposals!r} must be >= 0 or null")
        if self.max_llm_errors < 1:
            raise ConfigError(f"strategy.max_llm_errors={self.max_llm_errors!r} must be >= 1")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "EvolveConfig":
        """Checked like the run config: unknown keys and wrong types raise ConfigError naming `strategy.<key>`."""
        return build_strategy_params(cls, params)
