"""POLCA's summarizer: memory turned into guidance for the proposer (`AgentOpt/OpenTrace`
`opto/trainer/summarizer.py`).

Every `summarize_every` iterations the strategy samples up to `summary_candidates` candidates with
known scores that no summary has seen yet (`sample_for_summary`), shows each with one random
successful run (score > `success_threshold`) and one random failed run, and asks the LLM for a
consolidated, standalone summary that replaces the previous one (`build_messages`). The answer is
XML, `<reasoning>` then `<summary>`; it is read on top of the one answer reader
(`optforge.llm.parse.read_answer`, which moves `<reasoning>` and `<think>` blocks out of the answer).
When the answer has no usable summary, the old context is kept (`next_context`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Collection, Sequence

from optforge.llm.measured import clip
from optforge.llm.parse import Answer, read_answer
from optforge.search.polca.memory import Candidate, Rollout
from optforge.search.polca.prompt import FEEDBACK_CHARS, format_score, load, render

_SUMMARY = re.compile(r"<summary\b[^>]*>(.*?)</summary\s*>", re.IGNORECASE | re.DOTALL)
_SUMMARY_OPEN = re.compile(r"<summary\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class Shown:
    """One candidate as the summarizer sees it: one successful and one failed run (None when it has none)."""

    candidate: Candidate
    success: Rollout | None
    failure: Rollout | None


def sample_for_summary(candidates: Sequence[Candidate], rng: random.Random, k: int, threshold: float = 0.0,
                       summarized: Collection[str] = ()) -> list[Shown]:
    """Up to `k` candidates with a known score and not in `summarized`, each with a random run scoring
    above `threshold` and a random run at or below it. Deterministic given `rng`'s state: candidates
    are taken in creation order before sampling. The caller adds the ids to its summarized set."""
    pool = sorted((c for c in candidates if c.n and c.id not in summarized), key=lambda c: c.created)
    shown = []
    for c in rng.sample(pool, min(k, len(pool))):
        known = [r for r in c.rollouts if r.score is not None]
        good = [r for r in known if r.score > threshold]
        bad = [r for r in known if r.score <= threshold]
        shown.append(Shown(c, rng.choice(good) if good else None, rng.choice(bad) if bad else None))
    return shown


def _run(label: str, r: Rollout) -> str:
    feedback = clip(r.feedback.strip(), FEEDBACK_CHARS) if r.feedback.strip() else "(no feedback)"
    return f"{label} run: task {r.task}, seed {r.seed}, score {format_score(r.score)}\nFeedback:\n{feedback}"


def format_trajectories(shown: Sequence[Shown]) -> str:
    """The candidates and runs of one summarizer prompt."""
    blocks = []
    for s in shown:
        c = s.candidate
        parts = [f"### Candidate {c.id}: mean score {format_score(c.mean)} over {c.n} run(s)",
                 f"```python\n{c.source.strip()}\n```"]
        if s.success is not None:
            parts.append(_run("Successful", s.success))
        if s.failure is not None:
            parts.append(_run("Failed", s.failure))
        blocks.append("\n".join(parts))
    return "\n\n".join(blocks)


def build_messages(current_summary: str, shown: Sequence[Shown]) -> list[dict[str, str]]:
    """The chat messages of one summarizer call."""
    user = render("summarizer", current_summary=current_summary.strip() or "(none yet)",
                  trajectories=format_trajectories(shown))
    return [{"role": "system", "content": load("summarizer_system").strip() + "\n"},
            {"role": "user", "content": user.strip() + "\n"}]


@dataclass(frozen=True)
class SummaryAnswer:
    """The summarizer's answer, read. `summary` is None when unusable, and `reason` says why."""

    summary: str | None
    reasoning: str
    reason: str = ""
    answer: Answer | None = None

    @property
    def ok(self) -> bool:
        return self.summary is not None


def read_summary(content: str | bytes | None, finish_reason: Any = None, reasoning: str | None = None) -> SummaryAnswer:
    """Read a summarizer completion: the last complete, non-empty `<summary>` of the final answer."""
    answer = read_answer(content, finish_reason, reasoning)

    def no(reason: str) -> SummaryAnswer:
        return SummaryAnswer(None, answer.reasoning, reason, answer)

    if answer.truncated:
        return no("truncated answer: the model hit the output limit (finish_reason 'length'), so the summary "
                  "may be incomplete; raise llm.max_tokens")
    if answer.finish_reason == "content_filter":
        return no("the provider's content filter stopped the answer (finish_reason 'content_filter')")
    found = [m.group(1).strip() for m in _SUMMARY.finditer(answer.text)]
    if found and found[-1]:
        return SummaryAnswer(found[-1], answer.reasoning, "", answer)
    if found:
        return no("the <summary> block is empty")
    if _SUMMARY_OPEN.search(answer.text):
        return no("the <summary> block is not closed with </summary>")
    if _SUMMARY.search(answer.reasoning):
        return no("the <summary> block is inside the reasoning, which is not read; put it after </reasoning>")
    return no("no <summary>...</summary> block in the answer")


def next_context(current: str, read: SummaryAnswer) -> str:
    """The proposer's context after a summarizer call: the new summary, or `current` when it failed."""
    return read.summary if read.ok else current
