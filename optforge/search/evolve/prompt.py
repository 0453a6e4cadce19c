"""Build the evolve prompt from templates (optforge/llm/prompts): parent, its per-task results against
tuned AdamW, its feedback, reference seeds that do well where it lags, inspirations, recent failures.
Only search-stage results ever reach these functions (the strategy filters them).

Measured numbers (the step time against AdamW) are wrapped in `measured(...)`: the model sees them,
the replay key does not, so a replayed run finds its prompts again (docs/llm.md, Replay)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from optforge.llm.measured import clip, measured
from optforge.llm.prompts import load_template, render
from optforge.search.evolve.population import Program, finite
from optforge.types import EvaluationResult


# the evaluator's feedback quotes the measured step time (optforge/evaluators/feedback.py,
# result_text); the sentence is marked with its line break, so its presence is not keyed either
_STEP_TIME_SENTENCE = re.compile(r"\n?Each step costs [0-9.]+x AdamW's optimizer time\.")


def mark_measured(feedback: str) -> str:
    """Evaluator feedback with its measured sentences marked (call once, on the raw text)."""
    return _STEP_TIME_SENTENCE.sub(lambda m: measured(m.group(0)), feedback or "")


def summarise(result: EvaluationResult) -> dict[str, Any]:
    """The compact, JSON-able part of a result that prompts show."""
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
        out["feedback"] = clip(mark_measured(result.feedback), 600)
    exc = result.artifacts.get("exception") if isinstance(result.artifacts, Mapping) else None
    if exc:
        out["exception"] = str(exc)[-600:]
    return out


def _num(x: Any, fmt: str) -> str:
    v = finite(x)
    return "n/a" if v is None else format(v, fmt)


def format_results(prog: Program) -> str:
    r = prog.result
    if not r:
        return "(not evaluated yet)"
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


def format_feedback(prog: Program) -> str:
    r = prog.result
    parts = [prog.feedback or r.get("feedback", "")]
    if r.get("exception"):
        parts.append("exception: " + r["exception"])
    text = "\n".join(p for p in parts if p)
    return text or "(none)"


def format_references(refs: list[tuple[str, float, list[str]]], sources: Mapping[str, str],
                      ref_scores: Mapping[str, Mapping[str, float]]) -> str:
    if not refs:
        return "(none: no evaluated reference rule beats the parent on its weakest tasks)"
    blocks = []
    for name, _gain, tasks in refs:
        where = ", ".join(f"{t} {ref_scores[name][t]:+.3f}" for t in tasks)
        blocks.append(f"### {name} (scores on those tasks: {where})\n```python\n{sources[name].strip()}\n```")
    return "\n\n".join(blocks)


def format_inspirations(progs: list[Program]) -> str:
    if not progs:
        return "(none yet)"
    blocks = []
    for p in progs:
        label = p.seed or p.id
        scores = ", ".join(f"{t} {s:+.2f}" for t, s in sorted(p.scores.items()))
        blocks.append(f"### {label}: fitness {float(p.fitness):+.3f} ({scores})\n```python\n{p.source.strip()}\n```")
    return "\n\n".join(blocks)


def format_failures(failures: list[dict[str, str]]) -> str:
    if not failures:
        return "(none)"
    return "\n".join(f"- {f['status']} ({f.get('edit') or 'proposal'}): {f['reason']}" for f in failures)


def build_messages(*, parent: Program, edit: str, references: str, inspirations: str, failures: str,
                   template_dir: str | None = None) -> list[dict[str, str]]:
    """The chat messages for one proposal: a system prompt with the rule contract, and the task."""
    system = render("evolve_system", template_dir, contract=load_template("rule_contract", template_dir).strip())
    user = render(
        "evolve", template_dir,
        parent_label=parent.seed or parent.id,
        parent_source=parent.source.strip(),
        parent_results=format_results(parent),
        parent_feedback=format_feedback(parent),
        references=references,
        inspirations=inspirations,
        failures=failures,
        output_format=load_template("format_diff" if edit == "diff" else "format_full", template_dir).strip(),
    )
    return [{"role": "system", "content": system.strip() + "\n"}, {"role": "user", "content": user.strip() + "\n"}]
