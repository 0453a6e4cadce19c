"""`optforge baselines [--suite S] [--rebuild | --add-seeds [SEEDS] | --add-wd | --add-references SEEDS | --upgrade |
--verify]`: show, rebuild, extend, upgrade or verify the tuned baselines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "baselines",
        help="show or rebuild a suite's baselines: tuned AdamW's curves and the references' scores",
        description=(
            "Show the committed baselines of a suite (the version and torch they were built with, the cost, and the "
            "references scored like a candidate), or rebuild them: AdamW on a 7-point grid to 4T and the references "
            "on their own grids, all through the sandboxed protocol."
        ),
    )
    p.add_argument("--suite", default="train", help="suite name or pkg.mod:fn (default train)")
    p.add_argument("--rebuild", action="store_true", help="measure them again (minutes of CPU for train)")
    p.add_argument("--jobs", type=int, default=2, help="sandboxed training jobs at once when rebuilding (default 2)")
    p.add_argument("--references", default="adamw,sgd,lion,muon", help="seeds to tune (adamw is required)")
    p.add_argument("--seeds", default=None, help="seeds to run when rebuilding, e.g. 0,1,2 (default: selection + report)")
    p.add_argument("--horizons", default="2,4", help="longer AdamW horizons in units of T (default 2,4)")
    p.add_argument(
        "--add-seeds", metavar="SEEDS", nargs="?", const="suite", default=None,
        help="run AdamW on more seeds (comma-separated, e.g. 5,6,7; alone: the suite's seeds the build lacks) with the "
        "build's lr arms, horizons and weight decays, keeping every stored run; also carries the file to a suite version "
        "whose tasks are unchanged",
    )
    p.add_argument(
        "--add-wd", action="store_true",
        help="add AdamW's weight-decay runs (at its chosen lr of every horizon, on every stored seed) that the "
        "baselines lack; stages that tune weight decay (heldout by default) need them",
    )
    p.add_argument(
        "--add-references", metavar="SEEDS", default=None,
        help="tune these seeds (comma-separated) into the existing baselines as references, e.g. sgd,lion",
    )
    p.add_argument("--wd", default=None, help="nonzero weight decays for --rebuild / --add-wd, e.g. 0.01,0.1,1 (default the built-in grid)")
    p.add_argument(
        "--derive-from", metavar="SUITE", default=None,
        help="cut the baselines from those of SUITE instead of measuring (its tasks must include this suite's, unchanged)",
    )
    p.add_argument("--upgrade", action="store_true",
                   help="turn a format-1 file into format 2 (resolution delta and sigma per task), or recompute a format-2 "
                   "file's statistics with this optforge, from its stored curves, no reruns")
    p.add_argument("--verify", action="store_true",
                   help="re-run tuned AdamW at its chosen lr on one seed per task here and compare with the stored curves (within delta)")
    p.add_argument("--measure-rho", action="store_true",
                   help="re-run AdamW under every ATEN_CPU_CAPABILITY this CPU has and store each task's largest relative "
                   "difference as its rho (minutes for train)")
    p.add_argument("--json", action="store_true", help="with --verify: print the rows as JSON")
    p.add_argument("--markdown", action="store_true", help="print the reference table as Markdown (for docs)")
    return p


def markdown(data: dict) -> str:
    """The reference table as Markdown: per-task scores with intervals, chosen lrs, and the aggregates
    (a row per task for a few references, a row per reference for many)."""
    from optforge.evaluators.baselines.files import cost_parts, cost_text, seed_text

    table = data.get("table") or {}
    refs = list(table)
    lines = [
        f"Suite `{data['suite']}` version {data['suite_version']}, torch {data['torch']}; lr picked on seeds "
        f"{seed_text(data['selection_seeds'])}, scored on seeds "
        f"{seed_text((table.get('adamw') or {}).get('seeds') or data['report_seeds'])}. "
        + ("Cell: score ± 95 % interval / chosen lr" if len(refs) <= 5 else "Score (each task's 95 % interval in its header)")
        + ": log2 AdamW-equivalent speedup, clipped to [-3, 2] (docs/suites.md \"The score\").",
        "",
        f"AdamW curves: seeds {seed_text(data.get('seeds') or [])}"
        + (f" (search seeds {seed_text(data['search_seeds'])})" if data.get("search_seeds") else "")
        + f", horizons {data.get('horizons', [1, 2, 4])} x T"
        + (f"; weight decays {', '.join(f'{w:g}' for w in data['weight_decays'])} at each horizon's chosen lr "
           "(for stages that tune weight decay)." if len(data.get("weight_decays") or []) > 1 else "."),
        "",
    ]
    lines += _markdown_by_task(data, table, refs) if len(refs) <= 5 else _markdown_by_reference(data, table)
    parts = cost_parts(data)
    lines.append("")
    lines.append(f"Build cost: {cost_text(parts[0][1])} in the sandboxed jobs."
                 + "".join(f" {what[0].upper() + what[1:]} later: {cost_text(c)}." for what, c in parts[1:]))
    return "\n".join(lines)


class _Bar:
    """A one-line progress bar on stderr (the CLI is the only place that draws one)."""

    def __init__(self, label: str):
        self.label, self.t0 = label, time.time()

    def __call__(self, done: int, total: int) -> None:
        width = 30
        frac = min(1.0, done / max(1, total))
        el = time.time() - self.t0
        eta = el / frac - el if frac > 0 else 0.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        sys.stderr.write(f"\r{self.label} [{bar}] {done}/{total} runs  {el:5.0f}s elapsed  ~{eta:4.0f}s left")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _markdown_by_task(data: dict, table: dict, refs: list[str]) -> list[str]:
    """A few references: a row per task, each cell score ± interval / chosen lr, then the aggregates."""
    from optforge.evaluators.scoring import format_score

    lines = ["| task | family | T | " + " | ".join(refs) + " |", "|---|---|---|" + "---|" * len(refs)]
    for name, t in data["tasks"].items():
        cells = []
        for r in refs:
            row = table[r]["tasks"].get(name, {})
            lr = row.get("lr")
            score = format_score(row.get("score", float("nan")), row.get("hw"))
            cells.append(f"{score} / {lr:.1e}" if lr else score)
        lines.append(f"| {name} | {t.get('family', '')} | {t['T']} | " + " | ".join(cells) + " |")
    for key in ("fitness", "robust", "median", "worst"):
        lines.append(f"| **{key}** | | | " + " | ".join(f"{table[r][key]:+.2f}" for r in refs) + " |")
    lines.append("| **wins** (interval above 0) | | | " + " | ".join(str(table[r]["wins"]) for r in refs) + " |")
    return lines


def _markdown_by_reference(data: dict, table: dict) -> list[str]:
    """Many references: a row per reference, best fitness first (each task's interval, the same for every
    row, in its header), then the chosen lrs in the same layout."""
    from optforge.evaluators.scoring import format_score

    tasks = list(data["tasks"])
    refs = sorted(table, key=lambda r: -table[r]["fitness"])
    hws = {t: table["adamw"]["tasks"].get(t, {}).get("hw") for t in tasks}
    head = [t if hws[t] is None else f"{t} (± {hws[t]:.2f})" for t in tasks]
    lines = ["| reference | fitness | wins | worst | " + " | ".join(head) + " |", "|---|---|---|---|" + "---|" * len(tasks)]
    for r in refs:
        row = table[r]
        lines.append(f"| {r} | {format_score(row['fitness'], row.get('fitness_hw'))} | {row['wins']} | {row['worst']:+.2f} | "
                     + " | ".join(format_score(row["tasks"].get(t, {}).get("score", float("nan")), None) for t in tasks) + " |")
    lines += ["", "Chosen lr (picked on the selection seeds):", "",
              "| reference | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for r in refs:
        lrs = [table[r]["tasks"].get(t, {}).get("lr") for t in tasks]
        lines.append(f"| {r} | " + " | ".join("-" if lr is None else f"{lr:.1e}" for lr in lrs) + " |")
    return lines


def render(data: dict, problems: tuple[list[str], list[str]]) -> str:
    from optforge.evaluators.baselines.files import cost_parts, cost_text, provenance_lines, seed_text

    errors, warnings = problems
    lines = [
        f"suite {data['suite']} version {data['suite_version']}, torch {data['torch']}, built {data.get('created', '?')}",
        "cost: " + "; ".join(("" if what == "build" else f"+ {what}: ") + cost_text(c) for what, c in cost_parts(data)),
        "seeds: " + ", ".join(f"{kind} {seed_text(data.get(f'{kind}_seeds') or []) or 'none'}"
                              for kind in ("selection", "report", "search"))
        + f"; AdamW runs on {seed_text(data.get('seeds') or [])}",
        "weight decays for AdamW: " + (", ".join(f"{w:g}" for w in data["weight_decays"]) if data.get("weight_decays")
                                       else "none (stages that tune weight decay cannot use these; --add-wd adds them)"),
    ]
    lines += provenance_lines(data)
    if data.get("rho") is not None:
        lines.append(f"rho (relative loss resolution across machines and kernels): {data['rho']:.2g}")
    for e in errors:
        lines.append(f"ERROR: {e}")
    for w in warnings:
        lines.append(f"warning: {w}")
    table = data.get("table") or {}
    if table:
        lines.append("")
        lines += _task_lines(data, table)
        lines.append("")
        lines += _reference_lines(data, table)
    return "\n".join(lines)


def _task_lines(data: dict, table: dict) -> list[str]:
    """Per task: tuned AdamW's lr at T, the resolution delta, sigma_task and the interval on the report seeds."""
    tasks = list(data["tasks"])
    w = max(len("task"), *(len(t) for t in tasks))
    lines = [f"{'task':<{w}}  {'AdamW lr (T)':>16}  {'delta':>7}  {'sigma':>5}  {'+-95%':>5}"]
    for t in tasks:
        rec = data["tasks"][t]
        chosen = rec["adamw"].get("chosen", {}).get(str(rec["T"]))
        lr = table["adamw"]["tasks"][t]["lr"]
        delta = (rec.get("resolution") or {}).get("delta")
        sigma, hw = rec.get("sigma"), table["adamw"]["tasks"][t].get("hw")
        lr_text = (f"{lr:.2e}" if lr else "-") + ("" if chosen is None else f" (h={chosen})")
        lines.append(f"{t:<{w}}  {lr_text:>16}  {'-' if delta is None else format(delta, '.2g'):>7}  "
                     f"{'-' if sigma is None else format(sigma, '.2f'):>5}  {'-' if hw is None else format(hw, '.2f'):>5}")
    lines.append("h: the lr's half-decade grid index, lr = 1e-3 * 10^(h/2); delta: loss resolution (scores treat closer "
                 "losses as ties); sigma: per-seed sd of the paired score of the references; +-95%: 1.96 sigma / "
                 "sqrt(report seeds)")
    return lines


def _reference_lines(data: dict, table: dict) -> list[str]:
    """Each reference a row, best fitness first: its fitness with interval, wins, worst, then each task's score."""
    from optforge.evaluators.scoring import format_score

    tasks = list(data["tasks"])
    refs = sorted(table, key=lambda r: -table[r]["fitness"])
    w = max(len("reference"), *(len(r) for r in refs))
    cols = [max(6, len(t)) for t in tasks]
    lines = ["score (log2 speedup vs tuned AdamW; lr picked on selection seeds, scored on report seeds "
             + ", ".join(str(s) for s in (table["adamw"].get("seeds") or [])) + "):",
             f"{'reference':<{w}}  {'fitness':>14}  wins  {'worst':>6}  " + "  ".join(f"{t:>{c}}" for t, c in zip(tasks, cols))]
    for r in refs:
        row = table[r]
        fit = format_score(row["fitness"], row.get("fitness_hw"))
        lines.append(f"{r:<{w}}  {fit:>14}  {row['wins']:>4d}  {format_score(row['worst'], None):>6}  " + "  ".join(
            f"{format_score(row['tasks'].get(t, {}).get('score', float('nan')), None):>{c}}" for t, c in zip(tasks, cols)))
    lines.append("wins: tasks whose 95 % interval lies above 0")
    return lines


def render_verify(rows: list[dict]) -> str:
    """One line per task: the stored and re-measured best loss of tuned AdamW and whether they agree."""
    w = max([len("task")] + [len(r["task"]) for r in rows])
    lines = [f"{'task':<{w}}  seed  {'lr':>8}  {'stored':>12}  {'here':>12}  {'rel diff':>8}  {'delta':>8}  ok"]
    for r in rows:
        lines.append(f"{r['task']:<{w}}  {r['seed']:>4}  {r['lr']:>8.2e}  {r['stored']:>12.7g}  {r['here']:>12.7g}  "
                     f"{r['rel_diff']:>8.1e}  {r['delta']:>8.1e}  {'ok' if r['ok'] else 'DIFFERS'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from optforge.cli import UserError
    from optforge.evaluators import baselines
    from optforge.evaluators.tasks import get_suite

    torch.set_num_threads(1)
    try:
        suite = get_suite(args.suite)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.derive_from:
        try:
            data = baselines.derive(baselines.load(args.derive_from), suite, get_suite(args.derive_from))
        except (ValueError, baselines.BaselineError) as e:
            raise UserError(str(e)) from None
        path = baselines.baseline_path(args.suite)
        baselines.save(data, path)
        print(f"wrote {path} (derived from {args.derive_from})")
    elif args.rebuild or args.add_seeds or args.add_wd or args.add_references:
        _measure(args, suite)
    try:
        data = baselines.load(args.suite)
    except baselines.BaselineError as e:
        raise UserError(str(e)) from None
    if args.upgrade:
        try:
            data = baselines.upgrade(data)
        except baselines.BaselineError as e:
            raise UserError(str(e)) from None
        path = baselines.baseline_path(args.suite)
        baselines.save(data, path)
        print(f"wrote {path} (format {data['format']}, statistics from the stored curves)")
    if args.measure_rho:
        try:
            measured = baselines.measure_rho(args.suite)
        except baselines.BaselineError as e:
            raise UserError(str(e)) from None
        data = baselines.set_measured_rho(data, measured)
        path = baselines.baseline_path(args.suite)
        baselines.save(data, path)
        for task, diffs in measured.items():
            print(f"{task}: rho {max(diffs.values()):.2g} (" + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + ")")
        print(f"wrote {path}")
    if args.verify:
        rows = baselines.verify(data, args.suite)
        if args.json:
            print(json.dumps(rows))
            return 0 if baselines.verify_message(rows, data, args.suite) is None else 1
        print(render_verify(rows))
        message = baselines.verify_message(rows, data, args.suite)
        if message:
            print(f"optforge baselines: {message}", file=sys.stderr)
            return 1
        print(f"the stored baselines of suite '{args.suite}' hold on this machine (every task within delta)")
        return 0
    problems = baselines.check(data, suite)
    print(markdown(data) if args.markdown else render(data, problems))
    return 1 if problems[0] else 0


def _measure(args: argparse.Namespace, suite: Any) -> None:
    """--rebuild (everything), --add-seeds (AdamW on more seeds), --add-wd (AdamW's weight-decay runs) or
    --add-references, saved to the suite's file."""
    from optforge.cli import UserError
    from optforge.evaluators import baselines
    from optforge.evaluators.validate import AllRunsFailed

    try:
        wds = tuple(float(x) for x in args.wd.split(",") if x.strip()) if args.wd else baselines.WD_GRID
    except ValueError:
        raise UserError(f"--wd {args.wd!r}: give comma-separated numbers, e.g. 0.01,0.1,1") from None
    if any(not w >= 0 for w in wds):
        raise UserError(f"--wd {args.wd!r}: weight decays must be >= 0")
    jobs = max(1, args.jobs)
    bar = _Bar(f"baselines {suite.name}")
    try:
        if args.rebuild:
            refs = tuple(r.strip() for r in args.references.split(",") if r.strip())
            seeds_used = tuple(int(x) for x in args.seeds.split(",")) if args.seeds else None
            horizons = tuple(int(x) for x in args.horizons.split(",") if x.strip())
            data = baselines.build(args.suite, workers=jobs, references=refs, progress=bar, seeds_used=seeds_used,
                                   horizons=horizons, weight_decays=wds)
            what = "rebuilt"
        else:
            data = baselines.load(args.suite)
            if args.add_seeds:
                try:
                    new = None if args.add_seeds == "suite" else [int(x) for x in args.add_seeds.split(",") if x.strip()]
                except ValueError:
                    raise UserError(f"--add-seeds {args.add_seeds!r}: give comma-separated integers, e.g. 5,6,7") from None
                data = baselines.add_seeds(data, args.suite, new, workers=jobs, progress=bar)
            if args.add_references:
                refs = tuple(r.strip() for r in args.add_references.split(",") if r.strip())
                data = baselines.add_references(data, args.suite, refs, workers=jobs, progress=bar)
            if args.add_wd:
                data = baselines.add_weight_decay(data, args.suite, wds, workers=jobs, progress=bar)
            what = "updated"
    except (ValueError, KeyError, baselines.BaselineError, AllRunsFailed) as e:
        raise UserError(str(e)) from None
    finally:
        bar.close()
    path = baselines.baseline_path(args.suite)
    baselines.save(data, path)
    print(f"wrote {path} ({what})")
