"""The report's plots (matplotlib, Agg) as PNG bytes, and the numbers they draw.

Each `fig_*` function takes plain data or a store and returns a `Figure`, or None when there is
nothing to draw; `optforge.report` inlines them as data URIs.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from optforge.store import Store  # noqa: E402
from optforge.types import CEILING, FLOOR, Status  # noqa: E402


@dataclass
class Figure:
    title: str
    png: bytes


@dataclass(frozen=True)
class Point:
    """One candidate's final search result: its place in completion order and what it scored."""

    index: int  # 1-based, in order of completion
    seconds: float  # since the first completed evaluation
    fitness: float  # the floor score for a failure
    status: str
    stage: str
    candidate_id: str


STATUS_COLOURS = {
    Status.OK.value: "tab:blue", Status.INVALID.value: "tab:gray", Status.DIVERGED.value: "tab:orange",
    Status.TIMEOUT.value: "tab:purple", Status.MEMORY.value: "tab:brown", Status.CRASHED.value: "tab:red",
    Status.LOST.value: "black",
}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def timeline(results: Sequence[Any]) -> list[Point]:
    """Points of `results` ((candidate, evaluation) pairs, one per candidate) in completion order."""
    evs = sorted(results, key=lambda r: r[1].created)
    t0 = evs[0][1].created if evs else 0.0
    return [Point(i, ev.created - t0, ev.fitness, ev.status.value, ev.stage, cand.id)
            for i, (cand, ev) in enumerate(evs, 1)]


def best_so_far_of(points: Sequence[Point], stage: str) -> list[tuple[int, float, float]]:
    """(index, seconds, best fitness so far) at each `ok` point of `stage` (the stage candidates are ranked at)."""
    out, best = [], -math.inf
    for p in points:
        if p.status == Status.OK.value and p.stage == stage:
            best = max(best, p.fitness)
            out.append((p.index, p.seconds, best))
    return out


def best_so_far(store: Store, stage: str = "train") -> tuple[list[int], list[float], list[float]]:
    """(evaluation index, seconds since the first evaluation, best fitness so far) over the `ok` search
    stage evaluations at `stage` (rollouts left out), in completion order (references left out)."""
    refs = {c.id for c in store.candidates() if c.note.get("role") == "reference"}
    evs = sorted((e for e in store.evaluations(stage=stage) if e.candidate_id not in refs and e.ok
                  and e.rollout_id is None),
                 key=lambda e: e.created)
    xs, ts, ys, best = [], [], [], -math.inf
    t0 = evs[0].created if evs else 0.0
    for i, e in enumerate(evs, 1):
        best = max(best, e.fitness)
        xs.append(i)
        ts.append(e.created - t0)
        ys.append(best)
    return xs, ts, ys


def fig_timeline(points: Sequence[Point], stage: str) -> Figure | None:
    """Every candidate's fitness against evaluation index and wall-clock, coloured by status, with the
    best-so-far line over the `ok` results at `stage`."""
    if not points:
        return None
    best = best_so_far_of(points, stage)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)

    def kind(p: Point) -> str:
        return p.status if p.status != Status.OK.value or p.stage == stage else f"ok at {p.stage} only"

    order = list(STATUS_COLOURS)
    kinds = sorted({kind(p) for p in points}, key=lambda k: (order.index(k) if k in order else 0.5, k))
    for ax, xkey, xlabel in ((axes[0], "index", "evaluation (completion order)"),
                             (axes[1], "seconds", "wall-clock seconds since the first result")):
        for k in kinds:
            sel = [p for p in points if kind(p) == k]
            xs, ys = [getattr(p, xkey) for p in sel], [p.fitness for p in sel]
            if k == Status.OK.value:
                ax.scatter(xs, ys, s=20, color=STATUS_COLOURS[k], label=f"ok at {stage}")
            elif k in STATUS_COLOURS:
                ax.scatter(xs, ys, s=24, color=STATUS_COLOURS[k], marker="x", label=f"{k} (floor score)")
            else:  # passed an earlier stage, never scored at `stage` (the run stopped first)
                ax.scatter(xs, ys, s=20, facecolors="none", edgecolors=STATUS_COLOURS[Status.OK.value], label=k)
        if best:  # a step line through each improvement, held to the last result
            xs = [b[0] if xkey == "index" else b[1] for b in best] + [getattr(points[-1], xkey)]
            ax.step(xs, [b[2] for b in best] + [best[-1][2]], where="post", color="tab:green", lw=1.6,
                    label="best so far")
        ax.axhline(0.0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("fitness (mean log2 speedup vs AdamW)")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return Figure("Every candidate over time", _png(fig))


def fig_funnel(counts: Mapping[str, int]) -> Figure | None:
    if not counts:
        return None
    fig, ax = plt.subplots(figsize=(max(7.0, 1.8 * len(counts)), 3))  # room for "train_fresh_seeds"
    ax.bar(list(counts), list(counts.values()), color="tab:green")
    for i, v in enumerate(counts.values()):
        ax.text(i, v, str(v), ha="center", va="bottom")
    ax.set_ylabel("candidates passed")
    return Figure("Promotion funnel", _png(fig))


SCORE_CMAP = "RdYlGn"
"""Diverging: red below 0 (slower than tuned AdamW), yellow at 0 (ties it), green above (faster)."""


def score_norm() -> Normalize:
    """The heatmap's colour scale: symmetric about 0 over every score a task can get ([FLOOR, CEILING]),
    so the colour's side of yellow is the score's sign and equal magnitudes are equally saturated, and
    colours mean the same in every report."""
    limit = max(-FLOOR, CEILING)
    return Normalize(vmin=-limit, vmax=limit)


def fig_heatmap(rows: Sequence[tuple[str, Mapping[str, Any]]], n_references: int) -> Figure | None:
    """Per-task scores of `rows` ((label, metrics["tasks"]) pairs); the last `n_references` rows are
    references, set apart by a line."""
    tasks = sorted({t for _, row in rows for t in row})
    if not rows or not tasks:
        return None
    data = [[float((row.get(t) or {}).get("score", math.nan)) for t in tasks] for _, row in rows]
    fig, ax = plt.subplots(figsize=(3.0 + 0.8 * len(tasks), 1.0 + 0.42 * len(rows)))
    im = ax.imshow(data, cmap=SCORE_CMAP, norm=score_norm(), aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    if 0 < n_references < len(rows):
        ax.axhline(len(rows) - n_references - 0.5, color="black", lw=2)
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, "0.0" if abs(v) < 0.05 else f"{v:+.1f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="score (log2 speedup vs tuned AdamW; 0 ties it)")
    return Figure("Per-task scores: top candidates and references", _png(fig))


def fig_curves(curves: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Validation loss against step per task: the candidate and tuned AdamW."""
    curves = {t: c for t, c in curves.items() if c.get("steps") and c.get("val")}
    if not curves:
        return None
    n = len(curves)
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    for ax, (task, c) in zip(axes.flat, sorted(curves.items())):
        steps, val = list(c["steps"]), [math.nan if v is None else v for v in c["val"]]
        ax.plot(steps[: len(val)], val, label="candidate")
        if c.get("adamw_val"):
            ax.plot(c.get("adamw_steps") or steps[: len(c["adamw_val"])], c["adamw_val"], label="tuned AdamW", ls="--")
        ax.set_title(task, fontsize=9)
        vals = [v for v in val + list(c.get("adamw_val") or []) if v is not None and v > 0 and math.isfinite(v)]
        if vals and max(vals) / min(vals) > 20:
            ax.set_yscale("log")
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return Figure("Validation loss of the best candidate against tuned AdamW", _png(fig))
