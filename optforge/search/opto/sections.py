"""An evaluation as OptoPrime sections, each within a character budget.

OptoPrime (Cheng, Nie, Swaminathan, NeurIPS 2024, arXiv 2406.16218; `opto/optimizers/optoprime.py`)
shows the optimizer the subgraph that led from its variables to the feedback: `#Code` (the graph
as pseudo-code lines), `#Documentation`, `#Variables` (trainable roots), `#Inputs` (other roots),
`#Others` (intermediate values), `#Outputs` and `#Feedback`. Here the graph is one evaluation
(rule -> per-task training with the protocol's lr trials -> validation -> score against tuned
AdamW), kept to a few lines so the prompt stays readable, and every value is a summary: raw tensors
never enter the prompt.

Nothing names a task. Tasks are "task 1".."task n" by the evaluation trace's own labels
(`optforge.evaluators.trace.anonymous_labels` of the rule's source), so #Inputs, #Others and
#Outputs agree; #Inputs rounds what could pin a task down (parameter counts to one significant
digit, steps to 50).

`#Others` reads the evaluation's trace, `artifacts["trace"]` of a `detail="trace"` evaluation:
{"tasks": [{"task": "task i", "scored": {"runs", "lr_mult", "points": [{"step", "roles": {role:
{"grad_norm", "update_norm", "update_ratio"}}}]}, "diverged": null | {"lr_mult", "steps", "points",
"first_nonfinite": {"step", "kind", "role", "shape"}}}]} (optforge/evaluators/trace.py,
`evaluation_trace`). The trace has no optimizer state norms: they would come from the untrusted rule
process and are not recorded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from optforge.evaluators.protocol import ProtocolConfig
from optforge.evaluators.trace import anonymous_labels
from optforge.llm.prompts import load_template, render
from optforge.roles import ROLES
from optforge.search.base import SEARCH_STAGES
from optforge.search.common.render import finite, nonfinite_text, spread
from optforge.search.opto.params import SECTIONS, SectionBudgets
from optforge.search.opto.variables import CODE, type_name
from optforge.types import FLOOR, EvaluationResult

ROLE_DOCS = {
    "hidden_matrix": "a 2-D (or fused) weight inside the network",
    "conv": "a convolution kernel (>= 3-D)",
    "embedding": "an embedding table (also a language model's tied output head)",
    "head": "the output projection (last Linear, or one named like a head)",
    "vector": "a 1-D tensor: a bias or a normalisation gain",
    "scalar": "a 0-D tensor",
}
"""One line per role of optforge.roles.ROLES (optforge.roles.infer_roles says how each is found)."""

POINTS_SHOWN = 3  # eval steps per role in #Others: the first, the middle and the last


# ------------------------------------------------------------------------------------ budgets


def fit(text: str, budget: int) -> str:
    """`text` in at most `budget` characters: whole lines while they fit (the first line cut if it
    alone does not), then a line marking how many characters were cut."""
    if len(text) <= budget:
        return text
    room = budget - len(_mark(len(text), budget)) - 1
    kept: list[str] = []
    used = -1  # "\n".join length of kept
    for line in text.split("\n"):
        if used + 1 + len(line) > room:
            break
        kept.append(line)
        used += 1 + len(line)
    if not kept:
        kept, used = [text[:max(room, 0)]], max(room, 0)
    return "\n".join(kept) + "\n" + _mark(len(text) - used, budget)


def _mark(cut: int, budget: int) -> str:
    return f"[... {cut} more characters cut: this section's budget is {budget} characters]"


# ------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class TaskInput:
    """What #Inputs shows of one task: its family, parameter counts by role, steps and batch size."""

    family: str
    params_by_role: Mapping[str, int]
    steps: int
    batch_size: int


def task_input(task: Any) -> TaskInput:
    """A suite task's `TaskInput`: the model built at seed 0 (no validation data), counted by role."""
    problem = task.build(0, validation=False)
    counts: dict[str, int] = {}
    for name, p in problem.model.named_parameters():
        role = problem.roles[name]
        counts[role] = counts.get(role, 0) + p.numel()
    return TaskInput(task.family, counts, int(task.steps), int(task.batch_size))


def one_digit(n: int) -> str:
    """`n` rounded to one significant digit: 34567 -> "30,000", 96 -> "100"."""
    if n <= 0:
        return "0"
    return f"{int(round(n, -int(math.floor(math.log10(n))))):,}"


def round_steps(steps: int) -> int:
    """Steps to the nearest multiple of 50, at least 50."""
    return max(50, int(math.floor(steps / 50 + 0.5)) * 50)


def inputs_section(inputs: Mapping[str, TaskInput], labels: Mapping[str, str]) -> str:
    """#Inputs: per task label, the family, parameters by role, steps and batch size."""
    lines = []
    for name in _by_label(inputs, labels):
        t = inputs[name]
        params = ", ".join(f"{role} ~{one_digit(t.params_by_role[role])}" for role in ROLES if t.params_by_role.get(role))
        lines.append(f"(task) {labels[name]}: family {t.family}; parameters by role: {params or 'none'}; "
                     f"steps T ~{round_steps(t.steps)}; batch size {t.batch_size}")
    return "\n".join(lines) or "(no tasks)"


def _by_label(names: Any, labels: Mapping[str, str]) -> list[str]:
    missing = [n for n in names if n not in labels]
    if missing:
        raise ValueError(f"no task label for {len(missing)} task(s); give a 'task i' label for every task of the evaluation")
    return sorted(names, key=lambda n: _label_number(labels[n]))


def _label_number(label: str) -> int:
    m = re.fullmatch(r"task (\d+)", label)
    if not m:
        raise ValueError(f"task label {label!r} is not 'task <n>'")
    return int(m.group(1))


# -------------------------------------------------------------------------- code, docs, vars


def code_section(n_tasks: int, protocol: ProtocolConfig | None = None) -> str:
    """#Code: the evaluation graph in a few lines, with the lr protocol's grid and screening."""
    p = protocol or ProtocolConfig()
    parts = 1 / p.screen_fraction
    screen = "T" if not p.halving else f"T/{round(parts)}" if abs(parts - round(parts)) < 1e-6 else f"T*{p.screen_fraction:.2g}"
    return render("opto/opto_code", n_tasks=n_tasks, grid=", ".join(str(h) for h in p.grid),
                  extensions=p.max_extensions, screen=screen, keep=p.keep).rstrip("\n")


def documentation_section(contract: str | None = None) -> str:
    """#Documentation: the rule contract (with the ctx fields) and the parameter roles."""
    roles = "\n".join(f"- {role}: {ROLE_DOCS[role]}" for role in ROLES)
    contract = load_template("rule_contract") if contract is None else contract
    return render("opto/opto_documentation", contract=contract.strip(), roles=roles).rstrip("\n")


def variables_section(variables: Mapping[str, Any]) -> str:
    """#Variables in OptoPrime's form: `(code) rule:` and its source, `(float) BETA2=0.999`."""
    lines = []
    for name, value in variables.items():
        kind = type_name(value)
        lines.append(f"(code) {name}:\n{value.rstrip()}" if kind == "code" else f"({kind}) {name}={value!r}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- others


def _num(x: Any, fmt: str = ".2e") -> str:
    v = finite(x)
    return "n/a" if v is None else format(v, fmt)


def _role_lines(points: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for role in ROLES:
        at = [f"step {p['step']}: {_num(v.get('grad_norm'))} | {_num(v.get('update_norm'))} | {_num(v.get('update_ratio'))}"
              for p in points if (v := p["roles"].get(role)) is not None]
        if at:
            lines.append(f"  {role}: " + "; ".join(at))
    return lines


def others_section(trace: Mapping[str, Any] | None) -> str:
    """#Others: per task and role, the gradient norm | update norm | update/parameter ratio at a few
    eval steps of the scored runs (their mean), and the first diverged run's non-finite value."""
    if not isinstance(trace, Mapping) or not trace.get("tasks"):
        return "(no trace: this evaluation was run at summary detail)"
    lines = ["Per task and role, at eval steps of the scored runs (mean over runs): "
             "gradient norm | update norm | update/parameter ratio. Optimizer state norms are not recorded."]
    for t in trace["tasks"]:
        s, d = t.get("scored") or {}, t.get("diverged")
        if d:
            lines.append(_diverged(t))
            lines += _role_lines(d.get("points", [])[-2:])
        if s.get("points"):
            lines.append(f"{t['task']}: scored runs ({s.get('runs')}) at lr multiplier {_num(s.get('lr_mult'), '.3g')}")
            lines += _role_lines(spread(s["points"], POINTS_SHOWN))
        elif not d:
            lines.append(f"{t['task']}: no eval points recorded")
    return "\n".join(lines)


# ------------------------------------------------------------------------- outputs, feedback


def outputs_section(result: EvaluationResult, labels: Mapping[str, str]) -> str:
    """#Outputs: fitness, then per task the score, speedup, best val against AdamW, chosen lr, flags."""
    if not result.ok:
        return f"(float) fitness={result.fitness:+.3f} (the floor: status {result.status.value}; no task results)"
    tasks = result.metrics.get("tasks") or {}
    lines = [f"(float) fitness={result.fitness:+.3f} (mean task score)"]
    for name in _by_label(tasks, labels):
        t = tasks[name]
        flags = ", ".join(t.get("flags") or []) or "none"
        lines.append(f"(task) {labels[name]}: score {_num(t.get('score'), '+.3f')}, speedup x{_num(t.get('speedup'), '.2f')}, "
                     f"best val {_num(t.get('best_val'), '.4g')} vs AdamW {_num(t.get('adamw_val'), '.4g')}, "
                     f"lr multiplier {_num(t.get('lr_mult'), '.3g')} (lr {_num(t.get('lr'), '.3g')}), flags: {flags}")
    return "\n".join(lines)


_RULE_LINE = re.compile(r'File "<rule[^"]*", line (\d+)|\bat line (\d+)|\bline (\d+):')


def failure_line(text: str, source: str) -> str:
    """The rule line a failure text points at (the last one it names), quoted; "" if none."""
    found = [next(g for g in m.groups() if g) for m in _RULE_LINE.finditer(text)]
    lines = source.splitlines()
    for n in map(int, reversed(found)):
        if 1 <= n <= len(lines):
            return f"line {n} of the rule: {lines[n - 1].strip()}"
    return ""


def divergence_lines(trace: Mapping[str, Any] | None) -> list[str]:
    """One line per task whose trace has a diverged run: its lr multiplier and first non-finite value
    (step, role, shape). In #Feedback too, so a masked #Others still says where a rule broke."""
    if not isinstance(trace, Mapping):
        return []
    return [f"- {_diverged(t)}" for t in trace.get("tasks") or () if t.get("diverged")]


def _diverged(task: Mapping[str, Any]) -> str:
    d = task["diverged"]
    return f"{task['task']}: a run at lr multiplier {_num(d.get('lr_mult'), '.3g')} diverged; {nonfinite_text(d.get('first_nonfinite'))}"


def feedback_section(result: EvaluationResult, labels: Mapping[str, str], source: str) -> str:
    """#Feedback: for a failure, the evaluator's failure text and the rule line it points at; else
    the fitness and which tasks lag tuned AdamW (score below 0) and by how much, the worst first.
    Then, from the trace, where each diverged run first went non-finite."""
    diverged = divergence_lines(result.artifacts.get("trace"))
    diverged = ["Diverged runs (during the lr trials or scored):"] + diverged if diverged else []
    if not result.ok:
        text = result.feedback.strip() or f"The evaluation ended with status {result.status.value}."
        exception = str(result.artifacts.get("exception") or "")
        where = failure_line(exception + "\n" + result.feedback, source)
        return "\n".join([text] + ([f"It points at {where}"] if where else []) + diverged)
    tasks = result.metrics.get("tasks") or {}
    scores = {labels[n]: tasks[n].get("score") for n in _by_label(tasks, labels)}
    known = {k: v for k, v in scores.items() if _num(v) != "n/a"}
    flags = {labels[n]: ", ".join(tasks[n].get("flags") or []) for n in tasks}
    lag = sorted((v, k) for k, v in known.items() if v < 0)
    lines = [f"Fitness {result.fitness:+.3f} over {len(scores)} task(s); a score above 0 beats tuned AdamW."]
    if lag:
        lines.append("These tasks lag tuned AdamW, the worst first:")
        for v, k in lag:
            how = (f"the floor: the task failed ({flags[k] or 'no flags'})" if v <= FLOOR else
                   f"the rule needs {2 ** -v:.2f}x the steps AdamW needs to reach the same validation loss")
            lines.append(f"- {k}: score {v:+.3f}, {how}")
    elif known:
        v, k = min((v, k) for k, v in known.items())
        lines.append(f"Every task beats tuned AdamW; the weakest is {k} at {v:+.3f}." if v > 0 else
                     f"No task lags tuned AdamW, but {k} only ties it ({v:+.3f}).")
    missing = [k for k in scores if k not in known]
    if missing:
        lines.append(f"No score for: {', '.join(missing)}.")
    return "\n".join(lines + diverged)


# ------------------------------------------------------------------------------- all of them


def render_sections(result: EvaluationResult, variables: Mapping[str, Any], *, inputs: Mapping[str, TaskInput],
                    budgets: SectionBudgets, labels: Mapping[str, str] | None = None, mask: Sequence[str] = (),
                    source: str | None = None, protocol: ProtocolConfig | None = None, contract: str | None = None) -> dict[str, str]:
    """Every section's body by name ("Code", ..., "Feedback"), each cut to its budget
    (`budgets`); a masked section's body is "" (OptoPrime keeps its title). Raises ValueError for
    a result of a held-out stage, and for a task without a label.

    `result` is the oracle evaluation on the search suite; `inputs` holds a `TaskInput` per task
    name; `source` (default: the "rule" variable) is the rule that was evaluated, whose lines a
    failure quotes; `labels` maps task names to "task i" (default: the trace's labels,
    `anonymous_labels(source, task names)`).
    """
    if result.stage and result.stage not in SEARCH_STAGES:
        raise ValueError(f"a {result.stage!r} result is held out from search; OPTO's oracle is a search-stage "
                         f"evaluation ({', '.join(SEARCH_STAGES)})")
    hidden = {m.lstrip("#") for m in mask}
    source = variables.get(CODE, "") if source is None else source
    if labels is None:
        labels = anonymous_labels(source, sorted(set(inputs) | set(result.metrics.get("tasks") or {})))
    build = {
        "Code": lambda: code_section(len(inputs), protocol),
        "Documentation": lambda: documentation_section(contract),
        "Variables": lambda: variables_section(variables),
        "Inputs": lambda: inputs_section(inputs, labels),
        "Others": lambda: others_section(result.artifacts.get("trace")),
        "Outputs": lambda: outputs_section(result, labels),
        "Feedback": lambda: feedback_section(result, labels, source),
    }
    return {name: "" if name in hidden else fit(build[name](), budgets.of(name)) for name in SECTIONS}
