"""Evaluation results as prompt text, within a character budget (shared by every LLM strategy).

- `summarise(result)`: the compact, JSON-able part of a result a strategy keeps (evolve stores it
  per program): status, fitness, per-task scores, step time, state memory, the evaluator's feedback
  and, for a `detail="trace"` evaluation, its trace as text.
- `format_summary(summary)`: that summary as the lines a prompt shows.
- `trace_text(trace, budget)`: a trace (optforge/evaluators/trace.py) as text: per task (anonymous
  "task i"), the first non-finite value of its first diverged run, then per-role gradient norm,
  update norm and update/parameter ratio at a few eval steps.
- `render_result(result, budget)`: all of it as one text of at most `budget` characters.

Measured numbers (the step time against AdamW) are wrapped in `measured(...)`: the model sees them,
the replay key does not, so a replayed run finds its prompts again (docs/llm.md, Replay). Budgets
count the characters a replay keys on (`clip`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from optforge.llm.measured import clip, measured, unmeasured
from optforge.types import EvaluationResult

__all__ = ["FEEDBACK_BUDGET", "finite", "format_summary", "mark_measured", "nonfinite_text", "render_result", "spread",
           "summarise", "trace_text"]

FEEDBACK_BUDGET = 600  # characters of evaluator feedback (and of an exception) a summary keeps
TRACE_BUDGET = 1200  # characters of trace text a summary keeps

# the evaluator's feedback quotes the measured step time (optforge/evaluators/feedback.py,
# result_text); the sentence is marked with its line break, so its presence is not keyed either
_STEP_TIME_SENTENCE = re.compile(r"\n?Each step costs [0-9.]+x AdamW's optimizer time\.")


def finite(x: Any) -> float | None:
    """`float(x)` if that is a finite number, else None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mark_measured(feedback: str) -> str:
    """Evaluator feedback with its measured sentences marked (call once, on the raw text)."""
    return _STEP_TIME_SENTENCE.sub(lambda m: measured(m.group(0)), feedback or "")


def summarise(result: EvaluationResult, budget: int = FEEDBACK_BUDGET, trace_budget: int = TRACE_BUDGET) -> dict[str, Any]:
    """The compact, JSON-able part of a result that prompts show; feedback and exception cut to
    `budget` characters, the trace text (if the result has one) to `trace_budget`."""
    tasks = {}
    for name, t in sorted((result.metrics.get("tasks") or {}).items()):
        if not isinstance(t, Mapping):
            continue
        tasks[name] = {k: t.get(k) for k in ("score", "speedup", "lr_mult", "family", "flags") if k in t}
    out: dict[str, Any] = {"status": result.status.value, "stage": result.stage, "fitness": result.fitness, "tasks": tasks}
    for key in ("step_time_ratio", "state_bytes_per_param"):
        if finite(result.metrics.get(key)) is not None:
            out[key] = float(result.metrics[key])
    if result.feedback:
        out["feedback"] = clip(mark_measured(result.feedback), budget)
    artifacts = result.artifacts if isinstance(result.artifacts, Mapping) else {}
    if artifacts.get("exception"):
        out["exception"] = str(artifacts["exception"])[-budget:]
    if isinstance(artifacts.get("trace"), Mapping) and trace_budget > 0:
        out["trace"] = trace_text(artifacts["trace"], trace_budget)
    return out


def _num(x: Any, fmt: str) -> str:
    v = finite(x)
    return "n/a" if v is None else format(v, fmt)


def format_summary(r: Mapping[str, Any]) -> str:
    """A `summarise` dict as prompt lines: fitness, one line per task, state memory, step time."""
    if r.get("status") != "ok":
        return f"status {r.get('status')} at stage {r.get('stage') or '?'}: fitness {_num(r.get('fitness'), '+.3f')} (the floor)"
    lines = [f"fitness {_num(r.get('fitness'), '+.3f')} (mean task score, stage {r.get('stage')})"]
    for name, t in r.get("tasks", {}).items():
        flags = ", ".join(t.get("flags") or []) or "none"
        lines.append(f"- {name} ({t.get('family', '?')}): score {_num(t.get('score'), '+.3f')}, "
                     f"speedup x{_num(t.get('speedup'), '.2f')}, lr multiplier {_num(t.get('lr_mult'), 'g')}, flags: {flags}")
    if "state_bytes_per_param" in r:
        lines.append(f"optimizer state {r['state_bytes_per_param']:g} bytes/param")
    text = "\n".join(lines)
    if "step_time_ratio" in r:
        text += measured(f"\nstep time vs AdamW x{r['step_time_ratio']:.2f}")
    return text


def _fit(lines: Sequence[str], budget: int) -> str:
    """Whole lines while they fit in `budget` characters, then a note of how many were left out."""
    out, used = [], 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > budget:
            note = f"({len(lines) - i} more lines left out)"
            if used + len(note) <= budget:
                out.append(note)
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def _norms(roles: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{role} {_num(v.get('grad_norm'), '.2e')} | {_num(v.get('update_norm'), '.2e')} | {_num(v.get('update_ratio'), '.2e')}"
        for role, v in roles.items()
    )


def spread(points: Sequence[Mapping[str, Any]], n: int = 3) -> list:
    """Up to `n` points spread from the first to the last."""
    if len(points) <= n:
        return list(points)
    return [points[round(i * (len(points) - 1) / (n - 1))] for i in range(n)]


def nonfinite_text(first: Mapping[str, Any] | None) -> str:
    """A trace's first non-finite value (step, kind, role, shape) as one phrase; never a parameter name."""
    if not first:
        return "no non-finite gradient, update or loss (the loss exploded, or an update overflowed a weight)"
    if first.get("kind") == "loss":
        return f"first non-finite value: the loss at step {first.get('step')}"
    shape = tuple(first.get("shape") or ())
    return f"first non-finite value: the {first.get('kind')} at step {first.get('step')}, role {first.get('role')}, shape {shape}"


def trace_text(trace: Mapping[str, Any], budget: int = TRACE_BUDGET) -> str:
    """A trace as text of at most `budget` characters: divergences first, then the scored runs."""
    head = "Trace (per role: gradient norm | update norm | update/parameter ratio):"
    diverged, scored = [], []
    for t in trace.get("tasks", ()):
        d = t.get("diverged")
        if d:
            diverged.append(f"{t['task']}: a run at lr multiplier {_num(d.get('lr_mult'), 'g')} diverged; "
                            f"{nonfinite_text(d.get('first_nonfinite'))}")
            diverged += [f"  step {p['step']}: {_norms(p['roles'])}" for p in d.get("points", [])[-2:]]
        s = t.get("scored") or {}
        if s.get("points"):
            scored.append(f"{t['task']}: scored runs ({s.get('runs')}) at lr multiplier {_num(s.get('lr_mult'), 'g')}")
            scored += [f"  step {p['step']}: {_norms(p['roles'])}" for p in spread(s["points"])]
    return _fit([head] + diverged + scored, budget) if diverged or scored else ""


def render_result(result: EvaluationResult, budget: int = FEEDBACK_BUDGET + TRACE_BUDGET) -> str:
    """One result as text of at most `budget` unmeasured characters: the summary lines, then the
    evaluator's feedback, then the trace, each cut where the budget runs out."""
    s = summarise(result, budget, trace_budget=0)
    parts = [format_summary(s), s.get("feedback", ""), "exception: " + s["exception"] if s.get("exception") else ""]
    text = clip("\n".join(p for p in parts if p), budget)
    trace = result.artifacts.get("trace") if isinstance(result.artifacts, Mapping) else None
    left = budget - len(unmeasured(text)) - 1
    if isinstance(trace, Mapping) and left > 0:
        more = trace_text(trace, left)
        text += "\n" + more if more else ""
    return text
