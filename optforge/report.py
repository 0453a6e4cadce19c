"""A self-contained HTML page of one run: PNG plots (matplotlib) inlined as data URIs, nothing fetched.

Sections: a header (strategy, suite, status, score version, counts); every candidate over time with the
best-so-far line; the promotion funnel; per-task scores of the top candidates and the references (a
heatmap, and a table for the best candidate and the references with each score's 95 % interval, best
loss, AdamW's loss and the chosen lr); the best candidate's validation curves against tuned AdamW, its
task-detection flags and its program (helpers folded); its lineage, with each ancestor's fitness and a
diff of the program; failure reasons by status; POLCA's memory, OPTO's steps or MoH's procedures
(`strategy_views`); the strategy's records; and the run config.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from optforge.commands.show import failure_rows, final_search_results, record_rows
from optforge.config import FUNNEL_STAGES, SEARCH_STAGES, RunConfig, config_from_dict
from optforge.export import choose_best
from optforge.funnel import funnel_counts
from optforge.report_plots import Figure, best_so_far, fig_curves, fig_funnel, fig_heatmap, fig_timeline, timeline
from optforge.report_sections import (
    config_html, definition_list, failures_html, fitness_text, label, lineage_html, moh_procedures_html, named,
    opto_steps_html, polca_memory_html, records_html, source_html, task_detection_html, task_table,
)
from optforge.run_progress import KILLED, killed_hint, run_activity
from optforge.store import EvaluationRecord, Store
from optforge.strategy_views import strategy_view
from optforge.types import Candidate

__all__ = ["best_so_far", "build_report", "lineage", "reference_rows", "write_report"]

esc = html.escape


def lineage(store: Store, cid: str, limit: int = 20) -> list[Candidate]:
    """The best candidate and its first-parent ancestors, newest first."""
    chain: list[Candidate] = []
    seen: set[str] = set()
    while cid and cid not in seen and len(chain) < limit:
        seen.add(cid)
        try:
            cand = store.candidate(cid)
        except KeyError:
            break
        chain.append(cand)
        cid = cand.parents[0] if cand.parents else None
    return chain


def _is_reference(cand: Candidate) -> bool:
    """A row to compare against: the funnel's reference, a seed, or a warm start (a known optimizer)."""
    note = cand.note
    return note.get("role") == "reference" or bool(note.get("seed")) or bool(note.get("warm_start"))


def _scored(store: Store, cid: str, stages: list[str]) -> EvaluationRecord | None:
    """The first `ok` evaluation of `cid` with per-task results, trying `stages` in order."""
    for stage in stages:
        ev = store.evaluation(cid, stage)
        if ev is not None and ev.ok and ev.metrics.get("tasks"):
            return ev
    return None


def reference_rows(store: Store, rank_stage: str) -> list[tuple[Candidate, EvaluationRecord]]:
    """References, seeds and warm starts with their per-task results: at `rank_stage` if they were
    scored there, else at the first funnel stage that scored them (the funnel's reference runs only there)."""
    stages = [rank_stage, *FUNNEL_STAGES]
    rows = []
    for cand in store.candidates():
        if _is_reference(cand):
            ev = _scored(store, cand.id, stages)
            if ev is not None:
                rows.append((cand, ev))
    return rows


def _header(store: Store, config: RunConfig, best: Candidate | None, best_ev: EvaluationRecord | None,
            counts: dict[str, int]) -> str:
    statuses = store.status_counts()
    activity = str(run_activity(store))
    items = [
        ("strategy", esc(config.strategy_name)),
        ("suite", esc(str(config.suite))),
        ("status", esc(activity) + (f" ({esc(str(store.meta('stop_reason')))})" if store.meta("stop_reason") else "")
         + (f" <small>({esc(killed_hint(store.run_dir))})</small>" if activity == KILLED else "")),
        ("candidates", f"{len(store.candidates(include_reference=False))} proposed, {len(store.evaluations())} evaluations"),
        ("evaluations by status", ", ".join(f"{esc(str(k))} {v}" for k, v in sorted(statuses.items())) or "-"),
        ("funnel", " &rarr; ".join(f"{esc(k)} {v}" for k, v in counts.items()) or "-"),
        ("score version", esc(str(best_ev.metrics.get("score_version", 1))) if best_ev is not None else "-"),
    ]
    dollars, calls = store.llm_spend()
    if calls:
        items.append(("LLM", f"{calls} calls, ${dollars:.4f}"))
    if best is not None:
        held = store.evaluation(best.id, "heldout")
        items.append(("best candidate", f"{named(best)}: fitness "
                      f"{esc(fitness_text(best_ev))}" + (f"; held-out {esc(fitness_text(held, stage=False))}" if held else
                                                         "; not evaluated on held-out tasks")
                      + " <small>(mean log2 speedup over tuned AdamW, ± 95% interval)</small>"))
    return definition_list(items)


def _img(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return f'<h2>{esc(f.title)}</h2><img alt="{esc(f.title)}" src="data:image/png;base64,{data}">'


def build_report(run_dir: str | Path, top: int = 8) -> str:
    """The HTML text of the report for `run_dir` (`top`: candidates in the heatmap besides references)."""
    with Store.open(run_dir) as store:
        config = config_from_dict(store.config())
        rank_stage = config.search_stages()[-1].name
        best_id = choose_best(store, rank_stage)
        best = store.candidate(best_id) if best_id else None
        best_ev = store.evaluation(best_id, rank_stage) if best_id else None
        counts = funnel_counts(store, config)
        refs = reference_rows(store, rank_stage)
        ref_ids = {c.id for c, _ in refs}
        top_rows = [(r.candidate, r.evaluation) for r in store.leaderboard(rank_stage)
                    if r.evaluation.ok and r.candidate.id not in ref_ids][:top]
        heat = fig_heatmap([(label(c), ev.metrics.get("tasks") or {}) for c, ev in top_rows + refs], len(refs))
        points = timeline(final_search_results(store, config))

        parts = [f"<h1>optforge run <code>{esc(str(run_dir))}</code></h1>", _header(store, config, best, best_ev, counts)]
        parts += [_img(f) for f in (fig_timeline(points, rank_stage), fig_funnel(counts), heat) if f]
        if best is not None and best_ev is not None:
            parts.append(f"<h2>Per task: best candidate and references ({esc(rank_stage)})</h2>")
            parts.append(task_table([(best, best_ev)] + [r for r in refs if r[0].id != best.id]))
        if best is not None:
            curves = fig_curves((best_ev.artifacts.get("curves") if best_ev else None) or {})
            if curves:
                parts.append(_img(curves))
            parts.append(f"<h2>Source of the best candidate <code>{esc(best.id)}</code></h2>")
            parts.append(task_detection_html(best, best_ev))
            parts.append(source_html(best))
            chain = [(c, _latest(store, c.id, rank_stage)) for c in lineage(store, best.id)]
            parts.append("<h2>Lineage of the best candidate</h2>" + lineage_html(chain))
        parts.append("<h2>Failures by status</h2>" + failures_html(failure_rows(store)))
        view = strategy_view(store, config)
        if view is not None and view["kind"] == "polca_memory":
            parts.append("<h2>POLCA memory</h2>" + polca_memory_html(view))
        elif view is not None and view["kind"] == "moh_procedures":
            parts.append("<h2>MoH procedures</h2>" + moh_procedures_html(view))
        elif view is not None:
            parts.append("<h2>OPTO steps</h2>" + opto_steps_html(view))
        parts.append("<h2>Strategy records</h2>" + records_html(record_rows(store), suite=str(config.suite)))
        parts.append("<h2>Run config</h2>" + config_html(store.config()))
    return _PAGE.format(body="\n".join(parts))


def _latest(store: Store, cid: str, rank_stage: str) -> EvaluationRecord | None:
    """The evaluation at `rank_stage`, else the last search evaluation (a failure at smoke, say)."""
    ev = store.evaluation(cid, rank_stage)
    if ev is not None:
        return ev
    evs = [e for e in store.evaluations(cid) if e.stage in SEARCH_STAGES]
    return max(evs, key=lambda e: e.created) if evs else None


def write_report(run_dir: str | Path, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(build_report(run_dir), encoding="utf-8")
    tmp.replace(out)
    return out


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>optforge report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
pre {{ background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 12px; }}
dl.kv {{ display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }}
dl.kv dt {{ font-weight: bold; }} dl.kv dd {{ margin: 0; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-family: monospace; white-space: nowrap; }}
tr.total {{ background: #f6f8fa; font-weight: bold; }}
details summary {{ cursor: pointer; color: #555; }}
.warn {{ color: #82071e; }} .fit {{ font-weight: normal; font-size: 0.85em; color: #444; }}
.from {{ margin: 0; color: #666; font-size: 0.9em; }}
.add {{ color: #116329; background: #dafbe1; }} .del {{ color: #82071e; background: #ffebe9; }}
</style></head>
<body>
{body}
</body></html>
"""
