"""`optforge ls [DIR]`: the runs under DIR (default `runs/`), newest first. A run whose process died
without a clean end (SIGKILL, a crash) is `killed` (`run_progress.run_activity`, as `show` says)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from optforge.cli import UserError
from optforge.commands.table import format_table


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", help="list runs", description=__doc__)
    p.add_argument("dir", nargs="?", default="runs", help="directory holding run directories (default runs/)")
    return p


def find_runs(root: Path) -> list[Path]:
    if (root / "run.db").is_file():
        return [root]
    return sorted((p.parent for p in root.glob("*/run.db")), key=lambda p: p.stat().st_mtime, reverse=True)


def run(args: argparse.Namespace) -> int:
    from optforge.config import RunConfig
    from optforge.run_progress import run_activity
    from optforge.store import Store

    root = Path(args.dir)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; pass the directory that holds your runs")
    runs = find_runs(root)
    if not runs:
        print(f"no runs under {root}")
        return 0
    rows = []
    for path in runs:
        with Store.open(path) as store:
            cfg = store.config()
            strategy = RunConfig.from_dict(cfg).strategy_name if cfg else "?"
            stage = RunConfig.from_dict(cfg).search_stages()[-1].name if cfg else "train"
            best = store.best(stage)
            created = store.meta("created")
            rows.append([str(path), strategy, run_activity(store), len(store.candidates(include_reference=False)),
                         len(store.evaluations()), "-" if best is None else f"{best.evaluation.fitness:+.3f}",
                         time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "-"])
    for line in format_table(["run", "strategy", "status", "cands", "evals", "best", "created"], rows, right=(3, 4, 5)):
        print(line)
    return 0
