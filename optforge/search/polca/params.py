"""The keys of `strategy:` for `name: polca`, checked at load time (frozen dataclass).

Defaults follow the POLCA paper's experiments (`num_candidates 5`, `batch_size 2`,
`num_batches 1`, `num_proposals 1`, summarizer on, exploration candidates not re-validated), except
where optimizer discovery needs its own value: the epsilon of the `behaviour` embedding (1e-3
relative RMS of the probe updates, see `epsilon_net`) and `min_rollouts` (the reference exploits
the best mean of any candidate, however few its rollouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

EMBEDDINGS = ("behaviour", "text", "text-local")
PRIORITIES = ("mean", "ucb")
DETAILS = ("summary", "trace")

DEFAULT_EPSILON = {"behaviour": 1e-3, "text": 0.1, "text-local": 0.1}
"""Epsilon per embedding when `strategy.epsilon` is not set, in that embedding's units (`epsilon_net`):
relative RMS of the probe updates for `behaviour`; chord distance between unit vectors for the text
embeddings (the reference's 0.1, HotpotQA and tau-bench runs)."""


@dataclass(frozen=True)
class PolcaConfig:
    """Keys of `strategy:` for `name: polca`; one documented line per field."""

    warm_start: tuple[str, ...] = ("adamw",)  # seeds pushed first, each with the highest priority
    num_candidates: int = 5  # candidates popped from the queue and explored per iteration
    num_proposals: int = 1  # LLM proposals per (exploration candidate, minibatch)
    batch_size: int = 2  # (task, seed) pairs per minibatch
    num_batches: int = 1  # minibatches per iteration; each explored candidate is rolled on every one
    epsilon: float | None = None  # epsilon-net radius; null: the embedding's default (DEFAULT_EPSILON); 0: no filter
    embedding: str = "behaviour"  # "behaviour" (probe updates), "text" (litellm model) or "text-local" (packaged model)
    priority: str = "mean"  # exploration priority: "mean" of the rollout scores, or "ucb" over [FLOOR, CEILING]
    ucb_constant: float = 1.0  # c of the ucb bonus c * sqrt(ln(iteration + 2) / n) * (CEILING - FLOOR)
    min_rollouts: int = 4  # rollouts a candidate needs before it can be the exploited best (mean of 1-2 is noise)
    summarize_every: int = 1  # run the summarizer every this many iterations; 0: no summarizer
    summary_candidates: int = 5  # candidates not summarized before, sampled into one summarizer prompt
    success_threshold: float = 0.0  # a rollout scoring above this is "successful" for the summarizer (0: beats AdamW)
    memory_size: int | None = None  # most candidates the queue keeps (the lowest priorities leave); null: no limit
    validation_minibatch: bool = False  # validate proposals on a fresh minibatch, not on the one they came from
    detail: str = "summary"  # feedback detail of the exploration rollouts: "summary" or "trace"
    max_iterations: int | None = None  # stop after this many iterations; null: until a budget stops the run
    search_seeds: tuple[int, ...] | None = None  # minibatch seeds; null: the search suite's Suite.search_seeds

    def __post_init__(self) -> None:
        if self.search_seeds is not None:
            pool = tuple(int(x) for x in self.search_seeds)
            if not pool or len(set(pool)) != len(pool):
                raise ValueError(f"strategy.search_seeds={list(pool)!r} must be distinct seeds, or null for the "
                                 "search suite's search seeds")
            object.__setattr__(self, "search_seeds", pool)
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"strategy.max_iterations={self.max_iterations!r} must be >= 1 or null")
        ws = (self.warm_start,) if isinstance(self.warm_start, str) else tuple(self.warm_start)
        object.__setattr__(self, "warm_start", ws)
        from optforge import seeds

        known = seeds.names()
        if not ws:
            raise ValueError("strategy.warm_start must name at least one seed (e.g. [adamw]); the queue starts from them")
        for name in ws:
            if name not in known:
                raise ValueError(f"strategy.warm_start: unknown seed '{name}'; known seeds: {', '.join(known)}")
        for key in ("num_candidates", "num_proposals", "batch_size", "num_batches", "summary_candidates"):
            if getattr(self, key) < 1:
                raise ValueError(f"strategy.{key}={getattr(self, key)!r} must be >= 1")
        for key, choices in (("embedding", EMBEDDINGS), ("priority", PRIORITIES), ("detail", DETAILS)):
            if getattr(self, key) not in choices:
                raise ValueError(f"strategy.{key}={getattr(self, key)!r} must be one of {', '.join(choices)}")
        if self.epsilon is not None and not 0.0 <= self.epsilon < float("inf"):
            raise ValueError(f"strategy.epsilon={self.epsilon!r} must be a finite number >= 0, or null for the "
                             f"embedding's default ({self.embedding}: {DEFAULT_EPSILON[self.embedding]:g})")
        if not 0.0 <= self.ucb_constant < float("inf"):
            raise ValueError(f"strategy.ucb_constant={self.ucb_constant!r} must be a finite number >= 0")
        if self.min_rollouts < 0 or self.summarize_every < 0:
            key = "min_rollouts" if self.min_rollouts < 0 else "summarize_every"
            raise ValueError(f"strategy.{key}={getattr(self, key)!r} must be >= 0")
        if self.memory_size is not None and self.memory_size < self.num_candidates:
            raise ValueError(f"strategy.memory_size={self.memory_size!r} must be >= strategy.num_candidates "
                             f"({self.num_candidates}) or null (no limit)")

    @property
    def epsilon_value(self) -> float:
        """The epsilon in force: `epsilon`, or the embedding's default."""
        return DEFAULT_EPSILON[self.embedding] if self.epsilon is None else self.epsilon

    @property
    def uses_epsilon_net(self) -> bool:
        """False for epsilon 0: every proposal is evaluated (the reference's plain PrioritySearch)."""
        return self.epsilon_value > 0

    @property
    def uses_summarizer(self) -> bool:
        return self.summarize_every > 0

    @property
    def minibatch_size(self) -> int:
        """(task, seed) pairs drawn per iteration: batch_size x num_batches."""
        return self.batch_size * self.num_batches

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "PolcaConfig":
        """Checked like the run config: unknown keys and wrong types raise ValueError naming `strategy.<key>`."""
        from optforge.config import build_strategy_params

        return build_strategy_params(cls, params)
