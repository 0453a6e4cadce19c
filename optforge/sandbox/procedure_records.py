"""The records of a procedure run as its broker sees them: the limits, a call, the end, and the words
an end's reason starts with. Protocol and process: `optforge.sandbox.procedure`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAILURE_WORDS = (
    "policy",  # the checker refused the source (the violations, with lines)
    "exception",  # the procedure raised (type, message and its own line)
    "no_result",  # improve() returned nothing (None, an empty source) or is not defined
    "bad_result",  # improve() returned something that is not a source or {"source", "idea"}
    "cpu_time",  # it used its CPU seconds
    "wall_time",  # it used its wall-clock seconds (calls out not counted)
    "call_limit",  # it asked for more than max_calls calls
    "bad_channel",  # malformed JSON, an oversized line, a request out of order or while one is out
    "died",  # its process died (or could not start) without an end message, or was killed
    "memory",  # it ran out of its address space
    "isolation",  # not started: its process would share the user's uid and PID namespace, or be the host's root (docs/security.md)
)
CALL_KINDS = ("llm", "llm_batch", "utility")


@dataclass(frozen=True)
class ProcedureLimits:
    """What one procedure run may use. `wall_s` excludes the time while a call is out."""

    cpu_s: float = 60.0
    wall_s: float = 300.0
    max_calls: int = 200
    memory_mb: int = 1024
    max_message_bytes: int = 1 << 20
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not (self.cpu_s > 0 and self.wall_s > 0 and self.max_calls >= 0 and self.memory_mb >= 64
                and self.max_message_bytes >= 1024 and self.max_batch >= 1):
            raise ValueError(f"procedure limits out of range: {self}; need cpu_s > 0, wall_s > 0, max_calls >= 0, "
                             "memory_mb >= 64, max_message_bytes >= 1024, max_batch >= 1")


@dataclass(frozen=True)
class ProcedureCall:
    """One request of the procedure's, for the broker to answer or refuse.

    kind "llm": args {"system": str, "message": str, "temperature": float} -> answer a str;
    kind "llm_batch": args {"system": str, "messages": [str], "temperature": float} -> a list of str, one per message;
    kind "utility": args {"source": str, "subtask": str} -> a float, HIGHER IS BETTER (optforge fitness).
    `call_id` counts from 1 in the order the procedure made them."""

    run_id: str
    call_id: int
    kind: str
    args: dict


@dataclass(frozen=True)
class ProcedureEnd:
    """How a run ended. status "ok": value is {"source": str, "idea": str}; status "failed": reason is
    "word: text" (word in FAILURE_WORDS) and value None. calls: requests made (the one refused at the
    call limit included); cpu_s: the procedure's CPU seconds; wall_s: its wall-clock seconds without
    calls out; layers: the isolation layers that held."""

    run_id: str
    status: str
    reason: str | None
    value: dict | None
    calls: int
    cpu_s: float
    wall_s: float = 0.0
    layers: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failure(self) -> str | None:
        """The reason's word ("cpu_time", "policy", ...), None when ok."""
        return None if self.reason is None else self.reason.split(":", 1)[0]
