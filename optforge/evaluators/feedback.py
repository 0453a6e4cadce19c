"""Feedback text an LLM can act on: where and how a rule failed or lagged, in a few lines.

It names task families and steps, never anything a rule could use to special-case a task beyond
what `ctx` shows; it says whether the chosen lr sat at an edge of the grid (the rule's LR is off by
a factor), where runs diverged, and how the step time compares with AdamW.
"""

from __future__ import annotations

from typing import Any, Mapping

from optforge.evaluators.protocol import TaskTuning, multiplier
from optforge.evaluators.scoring import TaskScore, format_score


def failure_text(status: str, reason: str, exception: str | None, stderr_tail: str = "") -> str:
    """One short paragraph for a run that ended without scores."""
    what = {
        "invalid": "The rule was rejected before running",
        "crashed": "The rule raised an error (or its process died) while training",
        "timeout": "The evaluation ran out of time: the update is too slow (avoid per-element Python loops, big "
        "decompositions on every step)",
        "memory": "The evaluation ran out of memory: keep the optimizer state small (a few tensors per parameter)",
        "lost": "The evaluation was lost to an infrastructure failure (not the rule's fault)",
        "diverged": "The rule diverged",
    }.get(status, f"The evaluation ended with status {status}")
    text = f"{what} (reason: {reason})."
    detail = (exception or "").strip() or (stderr_tail or "").strip()
    if detail:
        lines = [ln for ln in detail.splitlines() if ln.strip()]
        text += " " + " | ".join(lines[-3:])[:600]
    return text


def _lr_words(tt: TaskTuning) -> str:
    if tt.at_edge == "low":
        return f"the best lr multiplier was the smallest tried ({multiplier(tt.chosen):.3g}x LR): LR is probably too large"
    if tt.at_edge == "high":
        return f"the best lr multiplier was the largest tried ({multiplier(tt.chosen):.3g}x LR): LR is probably too small"
    return ""


def _divergence_words(tt: TaskTuning) -> str:
    runs = list(tt.screen_runs.values()) + [r for rs in tt.full.values() for r in rs]
    div = sorted(
        {(r.spec.lr, r.diverged_at if r.diverged_at is not None else r.steps[-1] if r.steps else 0) for r in runs if r.diverged}
    )
    if not div:
        return ""
    tried = sorted({r.spec.lr for r in runs})
    ok = sorted({r.spec.lr for r in runs if not r.diverged})
    lr, step = div[0]
    text = f"diverged at step {step} at lr {lr:.3g}"
    if not ok:
        text += f" and at every lr tried ({', '.join(f'{x:.3g}' for x in tried)}): the update blows up (NaN/inf)"
    elif len(div) > 1:
        # not "stable up to": a run of a shorter screen can diverge at a smaller lr than a full run survives
        text += f" ({len(div)} runs diverged; trained without diverging at lr {', '.join(f'{x:.3g}' for x in ok)})"
    return text


def gate_text(tunings: Mapping[str, TaskTuning], scores: Mapping[str, TaskScore], status: str) -> str:
    """The `smoke` gate's feedback: pass or fail and, per task that failed, where it diverged. No fitness:
    20 steps on one seed measure nothing (docs/suites.md "`smoke`")."""
    failed = [k for k in scores if "diverged" in scores[k].flags or "no_finite_loss" in scores[k].flags]
    lines = [f"Smoke gate (pass/fail, not a score): {'passed' if not failed and status == 'ok' else 'failed'}; "
             f"{len(scores) - len(failed)} of {len(scores)} tasks train."]
    for i, name in enumerate(scores, 1):
        if name in failed:
            what = _divergence_words(tunings[name]) or "no finite validation loss"
            lines.append(f"- smoke task {i} of {len(scores)} (T={tunings[name].task.steps}): {what}.")
    return "\n".join(lines)


def result_text(
    tunings: Mapping[str, TaskTuning],
    scores: Mapping[str, TaskScore],
    agg: Mapping[str, Any],
    step_time_ratio: float | None,
    status: str,
) -> str:
    """Summary, then the weakest tasks with why, then lr and speed hints."""
    n = len(scores)
    lines = [
        f"Status {status}; fitness {format_score(agg['fitness'], None)} = mean log2 speedup over tuned AdamW on "
        f"{n} tasks (0 = as fast as AdamW, +1 = reaches AdamW's loss in half the steps, -3 = failed). "
        f"Wins {agg['wins']}/{n}, worst {format_score(agg['worst'], None)}."
    ]
    ranked = sorted(scores, key=lambda k: scores[k].score)
    for name in ranked[: min(3, n)]:
        s, tt = scores[name], tunings[name]
        # a tie (a score that rounds to 0) is no weak point
        if round(s.score, 2) >= 0 and "diverged" not in s.flags:
            break
        fam = tt.task.family or "unknown"
        parts = [f"{fam} task (T={tt.task.steps}): score {format_score(s.score, None)}"]
        if "diverged" in s.flags or "no_finite_loss" in s.flags:
            parts.append(_divergence_words(tt) or "no finite validation loss")
        else:
            if s.adamw_steps is not None and s.steps_needed:
                parts.append(
                    f"reached val loss {s.best_val:.4g} at step {s.steps_needed:.0f}; tuned AdamW gets there in "
                    f"{s.adamw_steps:.0f} steps (AdamW's best at T: {s.adamw_val:.4g})"
                )
            d = _divergence_words(tt)
            if d:
                parts.append(d)
        e = _lr_words(tt)
        if e:
            parts.append(e)
        lines.append("- " + "; ".join(parts) + ".")
    best = [k for k in sorted(scores, key=lambda k: -scores[k].score) if scores[k].score > 0.05][:2]
    if best:
        lines.append(
            "Strong on: "
            + ", ".join(f"{tunings[k].task.family or 'unknown'} task ({scores[k].score:+.2f})" for k in best)
            + "."
        )
    if step_time_ratio is not None and step_time_ratio > 1.5:
        lines.append(f"Each step costs {step_time_ratio:.1f}x AdamW's optimizer time.")
    return "\n".join(lines)
