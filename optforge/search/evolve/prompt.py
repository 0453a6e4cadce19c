"""Build the evolve prompt from templates (optforge/llm/prompts): parent, its per-task results against
tuned AdamW, its feedback, reference seeds that do well where it lags, inspirations, recent failures.
Only search-stage results ever reach these functions (the strategy filters them).

A parent's results are the `summarise` dict of its result, rendered by optforge/search/common/render.py
(measured numbers marked there, so replay finds the prompts again)."""

from __future__ import annotations

from typing import Mapping

from optforge.llm.prompts import load_template, render
from optforge.search.common.render import format_summary, mark_measured, summarise
from optforge.search.evolve.population import Program

__all__ = [
    "build_messages", "format_failures", "format_feedback", "format_inspirations", "format_references",
    "format_results", "mark_measured", "summarise",
]


def format_results(prog: Program) -> str:
    return format_summary(prog.result) if prog.result else "(not evaluated yet)"


def format_feedback(prog: Program) -> str:
    r = prog.result
    parts = [prog.feedback or r.get("feedback", "")]
    if r.get("exception"):
        parts.append("exception: " + r["exception"])
    if r.get("trace"):
        parts.append(r["trace"])
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
