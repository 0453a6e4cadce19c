"""`optforge export-procedure`: write a MoH run's best search procedure as a file a later run can seed
from (`strategy.seed_procedures: [FILE]` or `strategy.meta_procedure: FILE`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optforge.files import write_text_atomic


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export-procedure",
        help="write a MoH run's best search procedure as a .py file a later run can seed from",
        description="optforge export-procedure RUN_DIR [-o FILE]\n"
        "The procedure with the highest meta-utility among those the run scored (record kind 'procedure').",
    )
    p.add_argument("run_dir", help="a run directory of strategy moh")
    p.add_argument("-o", "--output", default=None, help="file to write (default: ./<run name>_procedure.py)")
    return p


def best_procedure(records: list[Any]) -> dict[str, Any] | None:
    """The `procedure` record with the highest meta-utility among those scored ok (the first on a tie)."""
    scored = [r.data for r in records if r.data.get("status") == "ok" and r.data.get("utility") is not None]
    return max(scored, key=lambda d: d["utility"]) if scored else None


def render(run_dir: Path, proc: dict[str, Any]) -> str:
    """The procedure's source under a comment that says where it came from."""
    head = (f"# optforge export-procedure: procedure {proc['id']} of run {run_dir.name} "
            f"(meta-utility {proc['utility']:.6g}; {proc.get('origin') or 'unknown origin'})\n")
    source = proc["source"]
    return head + source + ("" if source.endswith("\n") else "\n")


def run(args: argparse.Namespace) -> int:
    from optforge.cli import UserError
    from optforge.store import Store, StoreError

    run_dir = Path(args.run_dir)
    try:
        store = Store.open(run_dir)
    except StoreError as e:
        raise UserError(str(e)) from None
    with store:
        strategy = (store.config() or {}).get("strategy", {}).get("name")
        proc = best_procedure(store.records("procedure"))
    if proc is None:
        what = f"strategy '{strategy}'" if strategy != "moh" else "a MoH run that scored no procedure yet"
        raise UserError(f"{run_dir} has no scored procedure to export ({what}); export-procedure reads runs of "
                        "strategy moh")
    out = Path(args.output or f"{run_dir.resolve().name}_procedure.py")
    write_text_atomic(out, render(run_dir.resolve(), proc))
    print(f"wrote {out} (procedure {proc['id']}, meta-utility {proc['utility']:.4f})")
    return 0
