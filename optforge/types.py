"""Records that cross package borders: candidates, statuses, evaluation results.

One status vocabulary for the whole system, from the sandbox to `show`. The sandbox reports finer reasons;
`SANDBOX_REASONS` maps each onto a `Status` in one place.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Mapping

FLOOR = -3.0
"""The per-task and aggregate score given to a failure; nothing can rank below it."""

CEILING = 2.0
"""The per-task score cap: beating tuned AdamW given 4x its budget."""


class Status(str, Enum):
    """Why an evaluation ended. A failure is a status, never a score."""

    OK = "ok"
    INVALID = "invalid"  # rejected before running: static check, contract, unparseable LLM output
    DIVERGED = "diverged"  # NaN/inf or exploding loss
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASHED = "crashed"  # the candidate raised, or its process died
    LOST = "lost"  # infrastructure failure: retried, never cached

    @property
    def cacheable(self) -> bool:
        """`lost` says nothing about the candidate, so it is never cached."""
        return self is not Status.LOST

    def __str__(self) -> str:
        return self.value


SANDBOX_REASONS: Mapping[str, Status] = {
    # the sandbox's finer reasons -> the one vocabulary
    "ok": Status.OK,
    "rejected": Status.INVALID,  # static check refused the source
    "load_error": Status.INVALID,  # the source failed to load (contract)
    "exception": Status.CRASHED,  # the job raised
    "signal": Status.CRASHED,  # the worker died by a signal (segfault, kill)
    "exit": Status.CRASHED,  # the worker exited without a result
    "bad_output": Status.CRASHED,  # the worker wrote a malformed result
    "disk_quota": Status.CRASHED,  # the job filled its directory to its disk quota and was stopped there
    "timeout": Status.TIMEOUT,  # wall-clock limit
    "cpu_limit": Status.TIMEOUT,  # RLIMIT_CPU
    "memory": Status.MEMORY,  # address-space limit / MemoryError / OOM kill
    "diverged": Status.DIVERGED,
    "layer_unavailable": Status.LOST,  # a required isolation layer is missing here
    "worker_lost": Status.LOST,  # the sandbox itself failed (fork failed, template died)
    "cancelled": Status.LOST,
}


def status_for_reason(reason: str) -> Status:
    """Map a sandbox reason (possibly with a detail suffix, 'signal:11') onto a Status."""
    return SANDBOX_REASONS.get(reason.split(":", 1)[0], Status.CRASHED)


# C0 and C1 control characters except tab and newline, DEL, and lone UTF-16 surrogates (which cannot be
# encoded to UTF-8 and would crash a terminal write or a JSON/SQLite round trip)
_UNSAFE_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# what else hides or reorders text: format characters (bidi overrides, zero-width, the invisible tag
# characters U+E0000-E007F that can smuggle instructions to an LLM), line/paragraph separators, private use
_HIDDEN_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Co"})


def clean_text(text: object) -> str:
    """`text` as a string safe for a terminal, a report or an LLM prompt.

    Candidates control exception messages, printed output and source lines; ANSI escapes (ESC [2J),
    NUL, carriage returns, lone surrogates and invisible or reordering characters (Unicode categories
    Cf, Zl, Zp, Co: bidi overrides, zero-width spaces, tag characters) are dropped from them, keeping newlines and tabs, before
    they leave the trusted side's result records. `\r\n` becomes `\n`.
    """
    s = _UNSAFE_TEXT.sub("", (text if isinstance(text, str) else str(text)).replace("\r\n", "\n"))
    if s.isascii():
        return s
    return "".join(c for c in s if unicodedata.category(c) not in _HIDDEN_CATEGORIES)


def content_hash(source: str) -> str:
    """Stable hash of a candidate's exact source text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Candidate:
    """One proposed update rule: its source and where it came from. Immutable."""

    id: str
    source: str
    parents: tuple[str, ...] = ()
    strategy: str = ""
    note: Mapping[str, Any] = field(default_factory=dict)  # prompt id, mutation, failure reason...
    content_hash: str = ""
    created: float = 0.0

    @classmethod
    def new(
        cls,
        source: str,
        *,
        parents: tuple[str, ...] | list[str] = (),
        strategy: str = "",
        note: Mapping[str, Any] | None = None,
        id: str | None = None,
    ) -> "Candidate":
        return cls(
            id=id or uuid.uuid4().hex[:12],
            source=source,
            parents=tuple(parents),
            strategy=strategy,
            note=dict(note or {}),
            content_hash=content_hash(source),
            created=time.time(),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parents"] = list(self.parents)
        d["note"] = dict(self.note)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Candidate":
        return cls(
            id=d["id"],
            source=d["source"],
            parents=tuple(d.get("parents", ())),
            strategy=d.get("strategy", ""),
            note=dict(d.get("note") or {}),
            content_hash=d.get("content_hash") or content_hash(d["source"]),
            created=float(d.get("created", 0.0)),
        )


@dataclass
class EvaluationResult:
    """What one evaluation of one candidate at one stage produced.

    `metrics` holds numbers only (fitness, per-task scores, step-time ratio, state bytes, cost);
    `artifacts` holds everything else (loss curves, output tails, exception text, fingerprint).
    Modelled on OpenEvolve's EvaluationResult; statuses never leak into metrics.
    """

    status: Status
    stage: str = ""
    suite: str = ""
    suite_version: str = ""
    seeds: tuple[int, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    feedback: str = ""

    def __post_init__(self) -> None:
        self.status = Status(self.status)
        self.seeds = tuple(int(s) for s in self.seeds)
        # feedback and text artifacts (exception, output tails) carry candidate text to terminals and prompts
        self.feedback = clean_text(self.feedback)
        for key, value in self.artifacts.items():
            if isinstance(value, str):
                self.artifacts[key] = clean_text(value)
        fit = self.metrics.get("fitness")
        if self.status is not Status.OK or fit is None or not math.isfinite(float(fit)):
            # a failure always has the floor score, so nothing ranks it above a real result
            self.metrics["fitness"] = FLOOR

    @property
    def fitness(self) -> float:
        return float(self.metrics["fitness"])

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def failure(
        cls, status: Status | str, feedback: str, *, stage: str = "", **artifacts: Any
    ) -> "EvaluationResult":
        return cls(status=Status(status), stage=stage, feedback=feedback, artifacts=dict(artifacts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "stage": self.stage,
            "suite": self.suite,
            "suite_version": self.suite_version,
            "seeds": list(self.seeds),
            "metrics": self.metrics,
            "artifacts": self.artifacts,
            "feedback": self.feedback,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvaluationResult":
        return cls(
            status=Status(d["status"]),
            stage=d.get("stage", ""),
            suite=d.get("suite", ""),
            suite_version=d.get("suite_version", ""),
            seeds=tuple(d.get("seeds", ())),
            metrics=dict(d.get("metrics") or {}),
            artifacts=dict(d.get("artifacts") or {}),
            feedback=d.get("feedback", ""),
        )
