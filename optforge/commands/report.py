"""`optforge report RUN_DIR [-o report.html]`: a self-contained HTML page with plots of a run."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write a self-contained HTML report (PNG plots) of a run")
    p.add_argument("run_dir", help="the run directory")
    p.add_argument("-o", "--output", default=None, help="output file (default: RUN_DIR/report.html)")
    return p


def run(args: argparse.Namespace) -> int:
    from optforge.cli import UserError
    from optforge.report import write_report
    from optforge.store import StoreError

    out = Path(args.output) if args.output else Path(args.run_dir) / "report.html"
    try:
        path = write_report(args.run_dir, out)
    except StoreError as e:
        raise UserError(str(e)) from None
    print(f"wrote {path}")
    return 0
