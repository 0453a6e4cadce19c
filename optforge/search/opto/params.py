"""The keys of `strategy:` for `name: opto`, checked at load time (frozen dataclasses).

`memory_size` 5 follows the Trace paper's examples with memory (Cheng, Nie, Swaminathan, NeurIPS 2024,
arXiv 2406.16218; the library's own default is 0). `mask` hides OptoPrime sections: with every
trace section hidden the optimizer sees only its variables and feedback, the paper's OPRO-like
"Trace Masked" ablation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

SECTIONS = ("Code", "Documentation", "Variables", "Inputs", "Others", "Outputs", "Feedback")
"""The OptoPrime sections this strategy renders, in prompt order (`#Instruction` is fixed text)."""

MASKABLE = ("Code", "Documentation", "Inputs", "Others", "Outputs")
"""Sections `mask` may hide. #Variables and #Feedback are what OptoPrime optimizes with, so they stay."""

DETAILS = ("summary", "trace")
MIN_BUDGET = 80  # characters: room for a line and the truncation mark


@dataclass(frozen=True)
class SectionBudgets:
    """Most characters of each section's body (the `#Name` title not counted); a longer body is cut
    at a line boundary and ends with a mark saying how much was cut (`sections.fit`)."""

    code: int = 1000
    documentation: int = 3000
    variables: int = 8000  # the rule source must fit whole, or the LLM cannot rewrite it
    inputs: int = 1500
    others: int = 2500
    outputs: int = 2000
    feedback: int = 2000
    memory: int = 12000  # the past (variables, feedback) pairs, all of them together

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < MIN_BUDGET:
                raise ValueError(f"strategy.budgets.{f.name}={getattr(self, f.name)!r} must be >= {MIN_BUDGET} characters")

    def of(self, section: str) -> int:
        """The budget of `section` ("Code", "Memory", ...)."""
        return int(getattr(self, section.lower()))


@dataclass(frozen=True)
class OptoConfig:
    """Keys of `strategy:` for `name: opto`; one documented line per field."""

    start: str = "adamw"  # the seed rule (optforge/seeds) every chain starts from
    max_steps: int | None = None  # OptoPrime steps (LLM calls) per chain; null: until a budget stops the run
    memory_size: int = 5  # past (variables, feedback) pairs shown, oldest first; 0: no memory
    split_constants: bool = False  # each UPPER_CASE numeric constant is its own variable besides the code
    chains: int = 1  # parallel OptoPrime chains, each with its own variables, memory and RNG
    mask: tuple[str, ...] = ()  # sections hidden from the prompt, e.g. [Others, Code]
    detail: str = "trace"  # detail of the oracle evaluation: "trace" (per-role norms) or "summary"
    minibatch: int | None = None  # tasks of the search suite per oracle rollout, drawn by the chain; null: all
    budgets: SectionBudgets = field(default_factory=SectionBudgets)  # characters per section

    def __post_init__(self) -> None:
        if self.memory_size < 0:
            raise ValueError(f"strategy.memory_size={self.memory_size!r} must be >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"strategy.max_steps={self.max_steps!r} must be >= 1 or null")
        if self.chains < 1:
            raise ValueError(f"strategy.chains={self.chains!r} must be >= 1")
        if self.minibatch is not None and self.minibatch < 1:
            raise ValueError(f"strategy.minibatch={self.minibatch!r} must be >= 1 (tasks per oracle evaluation) or null")
        if self.detail not in DETAILS:
            raise ValueError(f"strategy.detail={self.detail!r} must be one of {', '.join(DETAILS)}")
        mask = (self.mask,) if isinstance(self.mask, str) else tuple(self.mask)
        names = [m.lstrip("#") for m in mask]
        for m, name in zip(mask, names):
            if name not in MASKABLE:
                why = " (OptoPrime optimizes with it)" if name in SECTIONS else ""
                raise ValueError(f"strategy.mask: '{m}' cannot be masked{why}; maskable sections: {', '.join(MASKABLE)}")
        object.__setattr__(self, "mask", tuple(dict.fromkeys(names)))

    @property
    def rolls_out(self) -> bool:
        """Whether the oracle is a rollout (trace detail, or a minibatch), not the candidate's own result."""
        return self.detail == "trace" or self.minibatch is not None

    def shows(self, section: str) -> bool:
        """Whether `section` ("Others", "#Others") is in the prompt."""
        return section.lstrip("#") not in self.mask

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "OptoConfig":
        """Checked like the run config: unknown keys and wrong types raise ValueError naming `strategy.<key>`."""
        from optforge.config import build_strategy_params

        return build_strategy_params(cls, params)
