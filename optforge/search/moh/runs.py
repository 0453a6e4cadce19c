"""One procedure run as the broker keeps it: what it was started with, and the answers it was given.

The answer log is what makes a run resumable: after a restart the broker starts the same procedure
with the same population, task and seed, answers its first calls from the log (checking each call is
the one logged: same kind, same arguments), and goes on live from the first call past it. A call that
was out when the run was killed (`pending`) is not asked again: its answer comes from the engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

INNER, META = "inner", "meta"


def call_key(kind: str, args: Any) -> str:
    """A short digest of a call's kind and arguments, to check a replayed call is the logged one."""
    text = json.dumps([kind, args], sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunSpec:
    """A procedure run: `level` inner (rules on `subtask`) or meta (procedures); JSON state."""

    run_id: str
    level: str
    procedure: str  # the procedure's id
    subtask: str  # a subtask name, or prompt.META_TASK
    task: str  # the task text it was handed
    population: list[dict[str, Any]]  # what `population` showed it, best first
    seed: int
    log: list[dict[str, Any]] = field(default_factory=list)  # {"key", "kind", "answer" | "refused", "llm"}
    pending: str | None = None  # the key of the call out now (an evaluation), if any
    waiting_for: str | None = None  # inner: the candidate id whose fitness that call waits on
    llm_calls: int = 0
    utility_calls: int = 0
    best: dict[str, Any] = field(default_factory=dict)  # inner: {"fitness", "candidate"}; meta: {"utility", "procedure"}
    asked: list[str] = field(default_factory=list)  # candidate ids (inner) or procedure ids (meta) it evaluated

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "RunSpec":
        return cls(**s)
