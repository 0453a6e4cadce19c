"""What a run reports: its live progress, its summary, and the errors that end it."""

from __future__ import annotations

from dataclasses import dataclass, field

from optforge.types import Candidate, EvaluationResult, Status

FAILED_START = frozenset({Status.INVALID, Status.CRASHED, Status.LOST})
"""Statuses with which a warm start or a reference stops the run (a broken setup, not a result)."""


@dataclass
class Progress:
    """A snapshot for the CLI's live display."""

    phase: str
    proposed: int  # candidates and rollouts
    done: int  # evaluations finished (all stages)
    in_flight: int
    queued: int
    best_fitness: float | None
    best_id: str | None
    failures: dict[str, int]
    elapsed_s: float
    eta_s: float | None
    candidates: int = 0  # of the proposals, candidates (the rest are rollouts)


@dataclass
class RunSummary:
    run_dir: str
    stop_reason: str
    interrupted: bool
    proposed: int
    evaluations: int
    statuses: dict[str, int]
    best: tuple[str, float] | None
    promoted: list[str] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> evaluations run there
    failure: str = ""  # why a failed start stopped the run (empty otherwise)
    not_started: int = 0  # queued search evaluations a budget stopped before they started
    cut: int = 0  # running search evaluations cancelled at budget.max_seconds

    def budget_note(self) -> str:
        """What the budget that stopped the search left undone, for the terminal ("" when nothing)."""
        if not (self.not_started or self.cut):
            return ""
        parts = ([f"{self.cut} running evaluation(s) cut at budget.max_seconds"] if self.cut else []) + (
            [f"{self.not_started} queued evaluation(s) not started"] if self.not_started else [])
        return (f"{' and '.join(parts)}; their candidates stay unobserved, and a resume with a larger budget "
                "runs them")


class RunFailed(RuntimeError):
    """A warm start or a reference failed (see FAILED_START); the message says which, where and why."""


class RunError(RuntimeError):
    """An error ended the run (the strategy raised, an LLM replay diverged, a store write failed).
    The store already says so (status `failed`, the reason in meta `failure`); the cause is chained."""


def error_reason(e: BaseException) -> str:
    """One line for the terminal and the store: the error's type and its message, whitespace collapsed."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def start_failure(candidate: Candidate, result: EvaluationResult, stage: str, first_stage: str) -> str | None:
    """Why this result of a warm start or reference stops the run, or None when it does not."""
    if result.status not in FAILED_START:
        return None
    if candidate.note.get("role") == "reference":
        role = "reference"
    elif candidate.note.get("warm_start") and stage == first_stage:
        role = "warm start"
    else:
        return None
    seed = candidate.note.get("seed")
    name = f"{candidate.id}" + (f" ({seed})" if seed and seed not in candidate.id else "")
    detail = " ".join(result.feedback.split()) or str(result.artifacts.get("exception", "")).strip()
    return f"{role} {name} ended {result.status.value} at {stage}: {detail or 'no reason recorded'}"
