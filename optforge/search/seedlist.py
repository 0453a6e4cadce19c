"""The `seeds` strategy: evaluate a fixed list of bundled reference rules and rank them.

It is the reference leaderboard a benchmark user wants, and it exercises the whole spine (engine,
store, evaluator, funnel) without any search. Candidate ids are `seed-<name>`, so runs are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from optforge import seeds as seed_lib
from optforge.config import ConfigError, build_strategy_params
from optforge.search.context import StrategyContext
from optforge.types import Candidate, EvaluationResult


@dataclass(frozen=True)
class SeedsParams:
    """Keys of `strategy:` for `name: seeds`."""

    seeds: tuple[str, ...] = ()  # seed names to evaluate, in order; empty = every bundled seed

    def __post_init__(self) -> None:
        known = seed_lib.names()
        for name in self.seeds:
            if name not in known:
                raise ConfigError(f"strategy.seeds: unknown seed '{name}'; known: {', '.join(known)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"strategy.seeds lists a seed twice: {list(self.seeds)}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "SeedsParams":
        """Checked like the run config: unknown keys and wrong types raise ConfigError naming `strategy.<key>`."""
        return build_strategy_params(cls, params)


class SeedList:
    """Proposes each listed seed once, in order; keeps their search fitness for `ranking()`."""

    name = "seeds"

    def __init__(self, params: SeedsParams) -> None:
        self.explicit = bool(params.seeds)
        self.order = list(params.seeds) or seed_lib.names()
        self.next = 0
        self.results: dict[str, float] = {}

    def propose(self, n: int) -> list[Candidate]:
        out = []
        for name in self.order[self.next : self.next + max(n, 0)]:
            out.append(Candidate.new(seed_lib.source(name), strategy=self.name, note={"seed": name}, id=f"seed-{name}"))
        self.next += len(out)
        return out

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        self.results[str(candidate.note.get("seed", candidate.id))] = result.fitness

    def done(self) -> bool:
        return self.next >= len(self.order)

    def ranking(self) -> list[tuple[str, float]]:
        """(seed, fitness) best first."""
        return sorted(self.results.items(), key=lambda kv: (-kv[1], self.order.index(kv[0])))

    def state(self) -> dict[str, Any]:
        return {"order": list(self.order), "next": self.next, "results": dict(self.results)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if not self.explicit:  # "all bundled seeds" means the list the run started with
            self.order = [str(s) for s in state["order"]]
        if list(state["order"]) != self.order:
            raise ValueError(f"saved seed list {state['order']} differs from the configured {self.order}")
        self.next = int(state["next"])
        self.results = {str(k): float(v) for k, v in state["results"].items()}


def from_config(params: Mapping[str, Any], ctx: StrategyContext) -> SeedList:
    """Build the strategy from the config's `strategy` mapping (minus `name`); unknown keys raise."""
    return SeedList(SeedsParams.from_params(params))
