"""The one protocol every search strategy implements (DESIGN section 7), in the spirit of Ray Tune's
`Searcher`. Strategies see only search-stage results (`smoke`, `train`), never held-out ones.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from optforge.types import Candidate, EvaluationResult

SEARCH_STAGES = ("smoke", "train")


@runtime_checkable
class Strategy(Protocol):
    name: str

    def propose(self, n: int) -> list[Candidate]:
        """Up to `n` new candidates; may return fewer, and may include already-failed ones
        (`note["status"] == "invalid"`, with `note["reason"]`), which are stored, not evaluated.
        A candidate the search starts from (a seed such as AdamW) carries `note["warm_start"] = True`:
        if it fails (invalid, crashed or lost at smoke) the engine stops the run, since nothing
        measured after it could be trusted."""

    def observe(self, candidate: Candidate, result: EvaluationResult) -> None:
        """The search-stage result of a proposed candidate."""

    def done(self) -> bool:
        """True when the strategy will never propose again."""

    def state(self) -> dict[str, Any]:
        """JSON-able full state (RNG included), stored in the same transaction as the proposals."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore from `state()` for resume."""
