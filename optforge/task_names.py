"""Feedback as the user reads it, with its tasks named.

The evaluator's feedback and the strategies' prompts keep tasks anonymous ("matrix task (T=300)",
"task 3"), so a rule cannot be written for one task; that text is what an LLM reads and must stay so.
`optforge show` and `optforge report` print it for a person, who needs to know which task it means:
`name_tasks` and `name_labels` rewrite it for display only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

_PHRASE = re.compile(r"\b([A-Za-z][\w-]*) task \(T=(\d+)\)(?=(: score ([+-]\d+\.\d+))?)")
_LABEL = re.compile(r"\btask (\d+)\b(?! \()")


@dataclass(frozen=True)
class TaskInfo:
    """What the feedback's phrase says of a task (family, steps T), and its name."""

    name: str
    family: str
    steps: int


def suite_tasks(suite: str) -> list[TaskInfo]:
    """The tasks of the named suite ([] for one this optforge cannot load, such as a user suite gone)."""
    from optforge.evaluators.tasks import get_suite

    try:
        return [TaskInfo(t.name, t.family or "unknown", int(t.steps)) for t in get_suite(suite).tasks]
    except Exception:  # noqa: BLE001 - display only: an unknown suite leaves the text as it is
        return []


def name_tasks(text: str, tasks: Sequence[TaskInfo], scores: Mapping[str, float] | None = None) -> str:
    """`text` with each "FAMILY task (T=N)" naming its task: "matfact (matrix task, T=300)". Tasks of one
    family and T are told apart by the score the phrase quotes (": score -0.41") when `scores` (task
    name -> score, the evaluation's) are given; still ambiguous, it names them all ("linreg2d or
    matfact (...)"); a phrase no task of `tasks` fits is left as it is."""
    def named(m: re.Match) -> str:
        family, steps, quoted = m.group(1), int(m.group(2)), m.group(4)
        fits = [t.name for t in tasks if t.family == family and t.steps == steps]
        if quoted is not None and scores and len(fits) > 1:
            by_score = [n for n in fits if isinstance(scores.get(n), (int, float)) and f"{scores[n]:+.2f}" == quoted]
            fits = by_score or fits
        if not fits:
            return m.group(0)
        return f"{' or '.join(sorted(fits))} ({family} task, T={steps})"

    return _PHRASE.sub(named, text)


def name_labels(text: str, labels: Mapping[str, str]) -> str:
    """`text` with each anonymous "task i" of `labels` ("task i" -> task name) followed by its name:
    "task 3 (matfact)"."""
    def named(m: re.Match) -> str:
        name = labels.get(m.group(0))
        return f"{m.group(0)} ({name})" if name else m.group(0)

    return _LABEL.sub(named, text)
