"""`optforge seeds`: the table of bundled reference optimizers; `optforge seeds show NAME`: a source."""

from __future__ import annotations

import argparse
import textwrap


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("seeds", help="list the bundled reference optimizers, or show one's source")
    p.add_argument("action", nargs="?", choices=["show"], help="'show NAME' prints the rule source")
    p.add_argument("name", nargs="?", help="seed name (with 'show')")
    return p


PAPER_WIDTH = 60


def paper_cell(title: str, width: int = PAPER_WIDTH) -> str:
    """A paper title for the table: whole words only, with an ellipsis when it is shortened."""
    return textwrap.shorten(title, width, placeholder=" …")


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def run(args: argparse.Namespace) -> int:
    from optforge import seeds
    from optforge.cli import UserError
    from optforge.rule import RuleError

    if args.action == "show":
        if not args.name:
            raise UserError("usage: optforge seeds show NAME; see 'optforge seeds' for names")
        try:
            print(seeds.source(args.name), end="")
        except RuleError as e:
            raise UserError(str(e)) from None
        return 0
    rows = []
    for name in seeds.names():
        info = seeds.info(name)
        hp = " ".join(f"{k}={_fmt(v)}" for k, v in info.hparams.items())
        rows.append((name, paper_cell(info.paper), str(info.state_tensors), hp))
    header = ("name", "paper", "state/param", "hyperparameters")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[3])
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
    print(f"\n{len(rows)} seeds; state/param = state tensors per 2-D parameter. 'optforge seeds show NAME' prints one.")
    return 0
