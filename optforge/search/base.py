"""The one protocol every search strategy implements, in the spirit of Ray Tune's `Searcher`: two
methods that matter (`propose`, `observe`), `done`, `state`/`load_state` for resume, and optional
hooks the engine calls only when a strategy defines them (`StrategyBase` gives no-op defaults).
Strategies see only search-stage results (`smoke`, `train`), never held-out ones or report seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Union, runtime_checkable

from optforge.config import SEARCH_STAGES
from optforge.types import Candidate, EvaluationResult

__all__ = ["DETAILS", "SEARCH_STAGES", "Proposal", "Rollout", "Strategy", "StrategyBase"]

DETAILS = ("summary", "trace")
"""Levels of detail an evaluation may record: `trace` adds per-role norms at the eval points."""


@dataclass(frozen=True)
class Rollout:
    """A request for one more evaluation row of a candidate the strategy has observed ok at `train`.

    - tasks: names of tasks of the search suite to run (None: all of them). Held-out tasks are refused.
    - seeds: search seeds to run on (from the suite's search-seed pool; report seeds are refused), or
    - new_seeds: a *repeat*: this many search seeds the candidate has not used yet, picked by the engine.
    - reuse_lr: take each task's lr multiplier from the candidate's first `train` result instead of
      tuning it on these seeds.
    - detail: "summary" or "trace".
    - note: the strategy's own label (stored with the rollout, shown by `optforge show`).

    The answer comes to `Strategy.observe_rollout(rollout, result)` (or `observe(candidate, result)`
    when the strategy has no such hook), with `rollout.id` set to the stored rollout's id. A request
    the engine refuses comes back the same way, as status `invalid` with the reason in
    `result.artifacts["refused"]`; nothing was evaluated, and the run goes on.
    """

    candidate_id: str
    tasks: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = ()
    new_seeds: int = 0
    reuse_lr: bool = False
    detail: str = "summary"
    note: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None

    @classmethod
    def repeat(cls, candidate_id: str, n_seeds: int, **kw: Any) -> "Rollout":
        """A rollout on `n_seeds` search seeds this candidate has not used yet."""
        return cls(candidate_id, new_seeds=n_seeds, **kw)

    @property
    def is_repeat(self) -> bool:
        return self.new_seeds > 0


Proposal = Union[Candidate, Rollout]


@runtime_checkable
class Strategy(Protocol):
    name: str

    def propose(self, n: int) -> list[Proposal]:
        """Up to `n` proposals: new candidates and/or rollouts of observed ones. May return fewer, and may
        include already-failed candidates (`note["status"] == "invalid"`, with `note["reason"]`), which
        are stored, not evaluated. A candidate the search starts from (a seed such as AdamW) carries
        `note["warm_start"] = True`: if it fails (invalid, crashed or lost at smoke) the engine stops
        the run, since nothing measured after it could be trusted. Returning nothing while `busy()` is
        True means "nothing now": the engine asks again later."""

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        """The final search-stage result of a proposed candidate."""

    def done(self) -> bool:
        """True when the strategy will never propose again: the only way a strategy ends a run."""

    def state(self) -> dict[str, Any]:
        """JSON-able full state (RNG included), stored in the same transaction as the proposals."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore from `state()` for resume."""


class StrategyBase:
    """Optional hooks with no-op defaults, for strategies to subclass (the engine also works with a
    plain object that has only the `Strategy` methods)."""

    name = "strategy"

    def busy(self) -> bool:
        """True while the strategy has nothing to propose now but is not done (waiting on its LLM calls
        or on results it asked for): an empty proposal then does not end the run."""
        return False

    def observe_partial(self, candidate: Candidate, result: EvaluationResult) -> None:
        """An intermediate search-stage result (a `smoke` result before `train`). In deterministic mode it
        comes just before the candidate's `observe`; after a resume it may come again."""

    def observe_rollout(self, rollout: Rollout, result: EvaluationResult) -> None:
        """The result of a rollout or repeat this strategy asked for. A refused request comes back here
        too: status `invalid`, `result.artifacts["refused"]` says why (a held-out task, a report seed,
        a candidate not observed ok, no search seeds left...), and no evaluation row was stored."""

    def close(self) -> None:
        """The search is over (a budget, `done()`, an interrupt or an error): release what the strategy
        holds outside its state (processes, connections). Called once, before the promotion funnel."""
