"""The report's HTML sections other than plots: header, per-task table, failures, strategy records, config,
lineage, source.

Every text that comes from a candidate or a run (source, notes, feedback, config values) goes through
`html.escape` here; `Candidate`/`EvaluationResult` already strip control characters (`clean_text`).
"""

from __future__ import annotations

import ast
import difflib
import html
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import yaml

from optforge.commands.table import clipped
from optforge.evaluators.scoring import format_score
from optforge.rule_flags import task_detection_flags
from optforge.search.symbolic.program import ProgramError, parse
from optforge.store import EvaluationRecord
from optforge.types import Candidate

esc = html.escape


def origin(cand: Candidate) -> str:
    """Where a candidate came from, in a few words: '<seed> (reference|warm start|seed)' for a known
    optimizer, else the mutation (or generator, or strategy) that made it."""
    note = cand.note
    program = note.get("program")  # a symbolic warm start's note holds its program (JSON), named after the seed
    seed = note.get("seed") or (program.get("name") if note.get("warm_start") and isinstance(program, dict) else None)
    if seed:
        kind = "reference" if note.get("role") == "reference" else "warm start" if note.get("warm_start") else "seed"
        return f"{' '.join(str(seed).split())[:32]} ({kind})"
    how = note.get("mutation") or note.get("generator") or note.get("kind") or cand.strategy
    return " ".join(str(how).split())[:36]


def label(cand: Candidate) -> str:
    """How a table or heatmap row names a candidate: the seed name for a reference, seed or warm start,
    else a short id with its origin."""
    text = origin(cand)
    return text if text.endswith(("(reference)", "(warm start)", "(seed)")) else f"{cand.id[:8]} {text}".rstrip()


def named(cand: Candidate) -> str:
    """HTML: the full id, then the origin."""
    return f"<code>{esc(cand.id)}</code> {esc(origin(cand))}"


def fitness_text(ev: EvaluationRecord | None, *, stage: bool = True) -> str:
    """'+0.31 ± 0.12 at train' for an ok result, 'invalid at smoke' for a failure, '-' for none."""
    if ev is None:
        return "-"
    where = f" at {ev.stage}" if stage else ""
    if not ev.ok:
        return f"{ev.status.value}{where}"
    return f"{format_score(ev.fitness, ev.metrics.get('fitness_hw'))}{where}"


def definition_list(items: Sequence[tuple[str, str]]) -> str:
    """<dl> of already-escaped HTML values keyed by plain-text terms."""
    return "<dl class=\"kv\">" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def config_html(config: Mapping[str, Any]) -> str:
    """The stored run config as YAML (the form a user writes it in)."""
    if not config:
        return "<p>no config stored</p>"
    first = [k for k in _CONFIG_FIRST if k in config]  # what a run is, then how it is bounded, then the rest
    ordered = {k: config[k] for k in first + sorted(k for k in config if k not in first)}
    return f"<pre class=\"config\">{esc(yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False))}</pre>"


RECORD_HTML_CHARS = 600
"""Characters of a strategy record the report shows (a marker says how many more, and how to see them)."""
_CONFIG_FIRST = ("strategy", "suite", "stages", "budget", "slots", "seed", "deterministic")


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(float(v), fmt)


def task_table(rows: Sequence[tuple[Candidate, EvaluationRecord]]) -> str:
    """One row per (task, optimizer): score with its 95 % interval, the best loss reached, tuned AdamW's
    loss, the learning rate the tuning chose, and the scorer's flags. Tasks are grouped."""
    tasks = sorted({t for _, ev in rows for t in (ev.metrics.get("tasks") or {})})
    if not tasks:
        return "<p>no per-task results</p>"
    head = ("<tr><th>task</th><th>optimizer</th><th>score ± 95%</th><th>best loss</th><th>AdamW loss</th>"
            "<th>chosen lr</th><th>flags</th></tr>")
    body = []
    for t in tasks:
        present = [(c, ev, (ev.metrics.get("tasks") or {})[t]) for c, ev in rows if t in (ev.metrics.get("tasks") or {})]
        for i, (cand, ev, row) in enumerate(present):
            task_cell = f'<th rowspan="{len(present)}" class="task">{esc(t)}</th>' if i == 0 else ""
            score = row.get("score")
            body.append(
                f"<tr>{task_cell}<td>{esc(label(cand))} <small>({esc(ev.stage)})</small></td>"
                f"<td class=\"num\">{esc(format_score(score, row.get('hw'))) if score is not None else '-'}</td>"
                f"<td class=\"num\">{_num(row.get('best_val'), '.4g')}</td>"
                f"<td class=\"num\">{_num(row.get('adamw_val'), '.4g')}</td>"
                f"<td class=\"num\">{_num(row.get('lr'), '.3g')}</td>"
                f"<td>{esc(', '.join(str(f) for f in row.get('flags') or []))}</td></tr>")
    totals = "".join(
        f"<tr class=\"total\"><th>{'mean' if i == 0 else ''}</th><td>{esc(label(c))}</td>"
        f"<td class=\"num\">{esc(format_score(ev.fitness, ev.metrics.get('fitness_hw')))}</td>"
        "<td></td><td></td><td></td><td></td></tr>"
        for i, (c, ev) in enumerate(rows))
    return f"<table class=\"tasks\">{head}{''.join(body)}{totals}</table>"


def failures_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """Failed evaluations grouped by status, then stage and reason (rows of `show.failure_rows`)."""
    if not rows:
        return "<p>no failed evaluations</p>"
    out = []
    for status in sorted({r["status"] for r in rows}):
        group = [r for r in rows if r["status"] == status]
        n = sum(len(r["candidates"]) for r in group)
        items = []
        for r in sorted(group, key=lambda r: (r["stage"], -len(r["candidates"]))):
            ids = r["candidates"]
            shown = ", ".join(i[:8] for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            items.append(f"<li><b>{esc(r['stage'])}</b> &times;{len(ids)}: <code>{esc(r['reason'][:600])}</code>"
                         f" <small>({esc(shown)})</small></li>")
        out.append(f"<h3 class=\"status-{esc(status)}\">{esc(status)} ({n})</h3><ul>{''.join(items)}</ul>")
    return "".join(out)


def records_html(rows: Sequence[Mapping[str, Any]], per_kind: int = 20, suite: str = "") -> str:
    """The strategy's records (rows of `show.record_rows`), grouped by kind, the last `per_kind` of each;
    their texts' tasks named (`strategy_views.readable` over the run's `suite`)."""
    from optforge.strategy_views import readable

    if not rows:
        return "<p>the strategy kept no records</p>"
    out = []
    for kind in sorted({r["kind"] for r in rows}):
        group = [r for r in rows if r["kind"] == kind]
        items = [f"<li>{'<code>' + esc(r['candidate']) + '</code> ' if r['candidate'] else ''}"
                 f"<code>{esc(clipped(json.dumps(readable(r['data'], suite) if suite else r['data'], sort_keys=True, ensure_ascii=False), RECORD_HTML_CHARS, 'optforge show RUN --records --full'))}</code></li>"
                 for r in group[-per_kind:]]
        more = f" (the last {per_kind} shown)" if len(group) > per_kind else ""
        out.append(f"<h3>{esc(kind)} ({len(group)}){more}</h3><ul>{''.join(items)}</ul>")
    return "".join(out)


def _score(v: Any) -> str:
    return "-" if v is None else f"{float(v):+.3f}"


def polca_memory_html(view: Mapping[str, Any]) -> str:
    """POLCA's memory (`strategy_views.polca_memory`): the top candidates by mean over their rollouts."""
    rows = view["rows"]
    intro = (f"<p>After {view['iteration'] or 0} iteration(s): the top {len(rows)} of {view['size']} candidates by mean "
             f"score over their rollouts (one per task and search seed). &#9733; marks the exploit pick, the best mean "
             f"with at least {view['min_rollouts']} scores; <i>lost</i> counts rollouts without a score.</p>")
    if not rows:
        return intro + "<p>the memory is empty</p>"
    head = ("<tr><th></th><th>candidate</th><th>mean</th><th>sd</th><th>n</th><th>lost</th><th>tasks</th>"
            "<th>where</th><th>parent</th></tr>")
    body = "".join(
        f"<tr><td>{'&#9733;' if r['best'] else ''}</td><td><code>{esc(r['id'])}</code> {esc(r['label'])}</td>"
        f"<td class=\"num\">{_score(r['mean'])}</td><td class=\"num\">{_num(r['sd'], '.3f')}</td>"
        f"<td class=\"num\">{r['n']}</td><td class=\"num\">{r['lost']}</td>"
        f"<td>{esc(', '.join(r['tasks']))}</td><td>{esc(r['place'])}</td>"
        f"<td><code>{esc(r['parent'] or '-')}</code></td></tr>" for r in rows)
    context = (f"<p><b>summarizer context:</b> {esc(view['context'])}</p>" if view.get("context") else "")
    rejected = view.get("rejections") or []
    rejections = ("<p><b>epsilon-net rejections</b> (proposals never evaluated), by iteration: "
                  + esc(", ".join(f"{it}: {n}" for it, n in rejected)) + "</p>") if rejected else ""
    return intro + f"<table class=\"polca-memory\">{head}{body}</table>" + rejections + context


def opto_steps_html(view: Mapping[str, Any]) -> str:
    """OPTO's steps (`strategy_views.opto_steps`), by chain: the change, its result, the feedback answered."""
    if not view["rows"]:
        return "<p>no OptoPrime step was taken</p>"
    best = view.get("best")
    out = [f"<p>best chain {esc(str(best['chain']))}: <code>{esc(str(best['candidate']))}</code> at "
           f"{_score(best['fitness'])} after {esc(str(best['steps']))} step(s)</p>" if best else ""]
    for chain in sorted({r["chain"] for r in view["rows"]}, key=lambda c: -1 if c is None else c):
        ended = view["ended"].get(str(chain))
        out.append(f"<h3>chain {esc(str(chain))}" + (f" <span class=\"fit\">ended: {esc(ended)}</span>" if ended else "")
                   + "</h3><ol class=\"opto-steps\">")
        for r in (r for r in view["rows"] if r["chain"] == chain):
            res = r["result"]
            got = ("" if res is None else f" &rarr; {esc(res['status'])}"
                   + ("" if res["fitness"] is None else f" {_score(res['fitness'])}") + f" at {esc(res['stage'])}")
            out.append(f"<li value=\"{int(r['step'] or 0)}\"><code>{esc(str(r['parent']))}</code> &rarr; "
                       f"<code>{esc(r['candidate'] or '(no candidate)')}</code>: {esc(r['change'])}{got}"
                       f"<details><summary>feedback it answered</summary><pre>{esc(r['feedback'])}</pre></details></li>")
        out.append("</ol>")
    return "".join(out)


def moh_procedures_html(view: Mapping[str, Any]) -> str:
    """MoH's procedures (`strategy_views.moh_procedures`) by outer iteration: parent, meta-utility, per
    subtask the best fitness its run reached and the rules it evaluated there, and why one failed."""
    names = [n for n, _ in view["subtasks"]]
    weights = ", ".join(f"{esc(n)} {w:g}" for n, w in view["subtasks"]) or "not resolved yet"
    best = view.get("best")
    out = [f"<p>The meta-utility of a procedure is the mean over subtasks, weighted {weights}, of the best fitness "
           "its run reached there." + (f" Best: <code>{esc(best['id'])}</code> at {_score(best['utility'])}." if best else "")
           + (f" Stopped: {esc(view['stop_reason'])}." if view.get("stop_reason") else "") + "</p>"]
    head = ("<tr><th>procedure</th><th>parent</th><th>meta-utility</th>"
            + "".join(f"<th>{esc(n)}</th>" for n in names) + "<th>idea</th></tr>")
    for group in view["iterations"]:
        meta = group["meta"]
        if group["iteration"] is None:
            out.append("<h3>seed procedures</h3>")
        else:
            out.append(f"<h3>iteration {int(group['iteration'])}</h3>")
            if meta is not None:
                new = (f"best new <code>{esc(meta['best_new'])}</code> {_score(meta['best_new_utility'])}: "
                       f"{'accepted' if meta['accepted'] else 'not accepted'}" if meta["best_new"] else
                       "no new procedure scored")
                out.append(f"<p>meta-optimizer <code>{esc(meta['meta_optimizer'])}</code> at "
                           f"{_score(meta['incumbent_utility'])}; {new}</p>")
        if not group["procedures"]:
            out.append("<p>no new procedure</p>")
            continue
        body = "".join(
            f"<tr><td><code>{esc(r['id'])}</code></td><td><code>{esc(r['parent'] or '-')}</code></td>"
            f"<td class=\"num\">{_score(r['utility']) if r['utility'] is not None else esc(str(r['status']))}</td>"
            + "".join(f"<td>{_moh_cell(r['subtasks'].get(n))}</td>" for n in names)
            + f"<td>{esc(r['idea'])}" + (f"<br><i>{esc(str(r['status']))}: {esc(r['reason'])}</i>" if r["reason"] else "")
            + "</td></tr>" for r in group["procedures"])
        out.append(f"<table class=\"moh-procedures\">{head}{body}</table>")
    out.append("<p>Per subtask: the best fitness, the best rule found, and the rules the run evaluated there.</p>")
    return "".join(out)


def _moh_cell(s: Mapping[str, Any] | None) -> str:
    if s is None:
        return "-"
    rule = f" <code>{esc(s['candidate'])}</code>" if s.get("candidate") else ""
    return (f"{_score(s['best'])}{rule} <span title=\"{esc(', '.join(s['found']))}\">"
            f"({len(s['found'])} evaluated)</span>")


@dataclass(frozen=True)
class SourceParts:
    """A rule source split for reading: the program, and the generated library helpers it carries."""

    program: str
    helpers: str  # "" when the source is all program (an LLM's or a seed's rule)


def split_source(source: str) -> SourceParts:
    """Split a symbolic program's rendered source (`search.symbolic.program.render`: docstring, imports,
    `LR`, library helpers, then `init` and `update`) into the program (`LR`, `init`, `update`) and the
    rest; any other source is all program."""
    try:
        parse(source)
        tree = ast.parse(source)
    except (ProgramError, SyntaxError, ValueError):
        return SourceParts(source, "")
    init = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "init")
    lr = next(n for n in tree.body if isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["LR"])
    lines = source.splitlines(keepends=True)
    lr_lines = lines[lr.lineno - 1: lr.end_lineno]
    before = lines[: lr.lineno - 1] + lines[lr.end_lineno: init.lineno - 1]
    program = "".join(lr_lines) + "\n\n" + "".join(lines[init.lineno - 1:])
    return SourceParts(program, "".join(before).strip("\n") + "\n")


def _defined_functions(helpers: str) -> set[str]:
    try:
        return {n.name for n in ast.parse(helpers).body if isinstance(n, ast.FunctionDef)}
    except SyntaxError:
        return set()


def diff_html(old: Candidate, new: Candidate) -> str:
    """A unified diff of the programs of `old` and `new` (helpers left out; a changed set of library
    functions is named instead)."""
    a, b = split_source(old.source), split_source(new.source)
    lines = difflib.unified_diff(a.program.splitlines(), b.program.splitlines(), old.id, new.id, lineterm="", n=2)
    out = []
    for ln in lines:
        cls = ("add" if ln.startswith("+") and not ln.startswith("+++")
               else "del" if ln.startswith("-") and not ln.startswith("---") else "")
        out.append(f'<span class="{cls}">{esc(ln)}</span>' if cls else esc(ln))
    fa, fb = _defined_functions(a.helpers), _defined_functions(b.helpers)
    note = ""
    if fa != fb:
        changes = [f"+{f}" for f in sorted(fb - fa)] + [f"-{f}" for f in sorted(fa - fb)]
        note = f"<p class=\"helpers-note\">library functions: {esc(' '.join(changes))}</p>"
    return note + "<pre class=\"diff\">" + ("\n".join(out) or "(identical program)") + "</pre>"


def lineage_html(chain: Sequence[tuple[Candidate, EvaluationRecord | None]]) -> str:
    """The best candidate and its first-parent ancestors, newest first: each with its fitness, and the
    diff of its program against its parent's."""
    out = []
    for i, (cand, ev) in enumerate(chain):
        parent = chain[i + 1][0] if i + 1 < len(chain) else None
        head = (f"<h3>{named(cand)} "
                f"<span class=\"fit\">fitness {esc(fitness_text(ev))}</span></h3>")
        out.append(head)
        if parent is not None:
            out.append(f"<p class=\"from\">from <code>{esc(parent.id)}</code></p>" + diff_html(parent, cand))
        else:
            out.append("<p class=\"from\">first of the line (no recorded parent)</p>")
    return "".join(out)


def source_html(cand: Candidate) -> str:
    """The program first; the helpers it carries folded in a <details> element."""
    parts = split_source(cand.source)
    out = f"<pre class=\"program\">{esc(parts.program.rstrip())}</pre>"
    if parts.helpers:
        n = len(parts.helpers.splitlines())
        out += (f"<details><summary>module header and library helpers ({n} lines)</summary>"
                f"<pre class=\"helpers\">{esc(parts.helpers.rstrip())}</pre></details>")
    return out


def task_detection_html(cand: Candidate, ev: EvaluationRecord | None) -> str:
    """Comparisons that could recognise a training set-up (as recorded by the evaluator, else computed)."""
    flags = (ev.artifacts.get("task_detection") if ev is not None else None)
    if flags is None:
        flags = [f.to_dict() for f in task_detection_flags(cand.source)]
    if not flags:
        return "<p>task detection: no comparison against a set-up-specific number.</p>"
    lines = cand.source.splitlines()

    def text(n: Any) -> str:  # the line itself: the program view reorders the source, so numbers alone mislead
        return lines[n - 1].strip() if isinstance(n, int) and 0 < n <= len(lines) else ""

    items = "".join(f"<li>line {esc(str(f.get('line')))}: {esc(str(f.get('message')))}"
                    f" <code>{esc(text(f.get('line')))}</code></li>" for f in flags)
    return ("<p class=\"warn\">task detection: this rule compares what identifies a training set-up with a "
            f"specific number, so it may behave differently on the tasks it was searched on:</p><ul>{items}</ul>")
