"""OptoPrime's memory: the last `size` (variables, feedback) pairs, oldest first.

As in Trace (Cheng, Nie, Swaminathan, NeurIPS 2024, arXiv 2406.16218; `opto/optimizers/optoprime.py`
and `opto/optimizers/buffers.py`, `FIFOBuffer`): each step's prompt shows the pairs of the steps
before it, as JSON examples under "Below are some variables and their feedbacks you received in
the past.", and the step's own pair is added after its prompt is built. Size 0 keeps nothing.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from optforge.search.opto.sections import fit

_NOTE_ROOM = 64  # characters kept for the note saying how many older entries were left out


@dataclass(frozen=True)
class Entry:
    """One past step: its variables (name -> value) and the feedback its evaluation got."""

    variables: Mapping[str, Any]
    feedback: str

    def to_dict(self) -> dict[str, Any]:
        return {"variables": dict(self.variables), "feedback": self.feedback}


class Memory:
    """A FIFO of `Entry`s holding at most `size`; `add` drops the oldest beyond it."""

    def __init__(self, size: int = 5):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"memory size must be an int >= 0, got {size!r}")
        self.size = size
        self._entries: deque[Entry] = deque(maxlen=size)

    def add(self, variables: Mapping[str, Any], feedback: str) -> None:
        if self.size:
            self._entries.append(Entry(dict(variables), feedback))

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def render(self, budget: int) -> str:
        """The memory as prompt text of at most `budget` characters ("" when empty): one JSON
        example per entry, oldest first. Over budget, the oldest entries are left out first, then
        the newest one is cut, each marked."""
        if not self._entries:
            return ""
        head = "Below are some variables and their feedbacks you received in the past (oldest first).\n\n"
        examples = [json.dumps(e.to_dict(), indent=4) for e in self._entries]
        kept = list(examples)
        while len(kept) > 1 and len(head) + _NOTE_ROOM + len("\n".join(kept)) > budget:
            kept.pop(0)
        dropped = len(examples) - len(kept)
        note = f"({dropped} older entr{'y' if dropped == 1 else 'ies'} left out for the character budget)\n" if dropped else ""
        return fit(head + note + "\n".join(kept), budget)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state; `from_state(json.loads(json.dumps(m.to_state(), sort_keys=True)))` is an equal
        memory that renders the same. The variables are [name, value] pairs: the store writes JSON with
        sorted keys, and a mapping would come back in another order, and so render another prompt."""
        return {"size": self.size, "entries": [{"variables": [[k, v] for k, v in e.variables.items()],
                                                "feedback": e.feedback} for e in self._entries]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Memory":
        m = cls(int(state["size"]))
        for e in state.get("entries", ()):
            variables = e["variables"]  # a mapping in a state saved before the pairs
            m.add(dict(variables.items() if isinstance(variables, Mapping) else map(tuple, variables)), e["feedback"])
        return m
