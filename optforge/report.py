"""A self-contained HTML page of one run: PNG plots (matplotlib) inlined as data URIs, nothing fetched.

Sections: best-so-far fitness against evaluations and wall-clock; funnel counts per stage; a per-task
score heatmap of the top candidates and the reference optimizers; the best candidate's validation
curves against tuned AdamW; and its lineage with source diffs against each parent.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optforge.config import config_from_dict  # noqa: E402
from optforge.export import choose_best  # noqa: E402
from optforge.funnel import funnel_counts  # noqa: E402
from optforge.store import Store  # noqa: E402

@dataclass
class Figure:
    title: str
    png: bytes


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def best_so_far(store: Store, stage: str = "train") -> tuple[list[int], list[float], list[float]]:
    """(evaluation index, seconds since the first evaluation, best fitness so far) in completion order."""
    evs = sorted(store.evaluations(stage=stage), key=lambda e: e.created)
    refs = {c.id for c in store.candidates() if c.note.get("role") == "reference"}
    evs = [e for e in evs if e.candidate_id not in refs]
    xs, ts, ys, best = [], [], [], -math.inf
    t0 = evs[0].created if evs else 0.0
    for i, e in enumerate(evs, 1):
        best = max(best, e.fitness)
        xs.append(i)
        ts.append(e.created - t0)
        ys.append(best)
    return xs, ts, ys


def _fig_progress(store: Store) -> Figure | None:
    xs, ts, ys = best_so_far(store)
    if not xs:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    a.step(xs, ys, where="post")
    a.set_xlabel("evaluations")
    b.step(ts, ys, where="post", color="tab:orange")
    b.set_xlabel("wall-clock seconds")
    for ax in (a, b):
        ax.set_ylabel("best fitness (log2 speedup vs AdamW)")
        ax.axhline(0.0, color="gray", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    return Figure("Best-so-far fitness", _png(fig))


def _fig_funnel(counts: dict[str, int]) -> Figure | None:
    if not counts:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(list(counts), list(counts.values()), color="tab:green")
    for i, v in enumerate(counts.values()):
        ax.text(i, v, str(v), ha="center", va="bottom")
    ax.set_ylabel("candidates passed")
    return Figure("Promotion funnel", _png(fig))


def _fig_heatmap(store: Store, top: int = 8) -> Figure | None:
    ranked = [r for r in store.leaderboard("train", include_reference=True) if r.evaluation.ok]
    refs = [r for r in ranked if r.candidate.note.get("role") == "reference"]
    rows = [r for r in ranked if r.candidate.note.get("role") != "reference"][:top] + refs
    if not rows:
        return None
    tasks = sorted({t for r in rows for t in (r.evaluation.metrics.get("tasks") or {})})
    if not tasks:
        return None
    labels = [r.candidate.note.get("seed") or r.candidate.id for r in rows]
    data = [[float((r.evaluation.metrics["tasks"].get(t) or {}).get("score", math.nan)) for t in tasks] for r in rows]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(tasks), 0.9 + 0.4 * len(rows)))
    im = ax.imshow(data, cmap="RdYlGn", vmin=-3, vmax=2, aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels)
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="score (log2 speedup vs tuned AdamW)")
    return Figure("Per-task scores: top candidates and references", _png(fig))


def _fig_curves(store: Store, cid: str) -> Figure | None:
    ev = store.evaluation(cid, "train")
    curves = (ev.artifacts.get("curves") if ev else None) or {}
    curves = {t: c for t, c in curves.items() if c.get("steps") and c.get("val")}
    if not curves:
        return None
    n = len(curves)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (task, c) in zip(axes.flat, sorted(curves.items())):
        ax.plot(c["steps"], c["val"], label="candidate")
        if c.get("adamw_val"):
            ax.plot(c.get("adamw_steps") or c["steps"][: len(c["adamw_val"])], c["adamw_val"], label="tuned AdamW", ls="--")
        ax.set_title(task, fontsize=9)
        vals = [v for v in list(c["val"]) + list(c.get("adamw_val") or []) if v is not None and v > 0]
        if vals and max(vals) / min(vals) > 20:
            ax.set_yscale("log")
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return Figure("Validation loss of the best candidate against tuned AdamW", _png(fig))


def lineage(store: Store, cid: str, limit: int = 20) -> list[Any]:
    """The best candidate and its first-parent ancestors, newest first."""
    chain = []
    seen = set()
    while cid and cid not in seen and len(chain) < limit:
        seen.add(cid)
        try:
            cand = store.candidate(cid)
        except KeyError:
            break
        chain.append(cand)
        cid = cand.parents[0] if cand.parents else None
    return chain


def _diff_html(old: str, new: str, old_name: str, new_name: str) -> str:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm="", n=2)
    out = []
    for ln in lines:
        cls = "add" if ln.startswith("+") and not ln.startswith("+++") else "del" if ln.startswith("-") and not ln.startswith("---") else ""
        out.append(f'<span class="{cls}">{html.escape(ln)}</span>' if cls else html.escape(ln))
    return "<pre>" + ("\n".join(out) or "(identical source)") + "</pre>"


def build_report(run_dir: str | Path) -> str:
    """The HTML text of the report for `run_dir`."""
    store = Store.open(run_dir)
    with store:
        best = choose_best(store)
        counts = funnel_counts(store, config_from_dict(store.config()))
        figures = [f for f in (_fig_progress(store), _fig_funnel(counts), _fig_heatmap(store),
                               _fig_curves(store, best) if best else None) if f]
        parts = [f"<h1>optforge run: {html.escape(str(run_dir))}</h1>"]
        cfg = store.config()
        strategy = (cfg.get("strategy") or {}).get("name", "?") if isinstance(cfg.get("strategy"), dict) else "?"
        status = store.status_counts("train")
        parts.append(
            f"<p>strategy <b>{html.escape(str(strategy))}</b>; {len(store.candidates(include_reference=False))} "
            f"candidates; train results by status: {html.escape(str(status))}; funnel: {html.escape(str(counts))}</p>"
        )
        if best:
            ev = store.evaluation(best, "train")
            held = store.evaluation(best, "heldout")
            parts.append(
                f"<h2>Best candidate {best}</h2><p>train fitness {ev.fitness:+.3f}"
                + (f", held-out fitness {held.fitness:+.3f}" if held else ", not evaluated on held-out tasks")
                + " (mean log2 speedup over tuned AdamW)</p>"
            )
        for f in figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(f'<h2>{html.escape(f.title)}</h2><img alt="{html.escape(f.title)}" src="data:image/png;base64,{data}">')
        if best:
            chain = lineage(store, best)
            parts.append("<h2>Lineage of the best candidate</h2>")
            for child, parent in zip(chain, chain[1:]):
                note = html.escape(str(dict(child.note).get("mutation", child.note.get("generator", ""))))
                parts.append(f"<h3>{child.id} &larr; {parent.id} <small>{note}</small></h3>")
                parts.append(_diff_html(parent.source, child.source, parent.id, child.id))
            parts.append(f"<h3>Source of {best}</h3><pre>{html.escape(chain[0].source)}</pre>")
    return _PAGE.format(body="\n".join(parts))


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
img {{ max-width: 100%; border: 1px solid #ddd; }}
pre {{ background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 12px; }}
.add {{ color: #116329; background: #dafbe1; }} .del {{ color: #82071e; background: #ffebe9; }}
</style></head>
<body>
{body}
</body></html>
"""
