"""`optforge export`: write a discovered rule (or any seed or rule file) as a standalone optimizer."""

from __future__ import annotations

import argparse
from pathlib import Path

from optforge.files import write_text_atomic


USAGE = ("%(prog)s RUN_DIR [CANDIDATE_ID | --best] -o FILE [--name CLASS]\n"
         "       %(prog)s SEED_NAME | RULE_FILE -o FILE [--name CLASS]")
"""The two forms, one a line (argparse prints a given usage as is, under "usage: ")."""

EXAMPLES = """examples:
  optforge export runs/quickstart --best -o my_optimizer.py --name MyOptimizer
  optforge export runs/quickstart 3f2a9c -o my_optimizer.py  # by id prefix
  optforge export adamw -o adamw_optimizer.py  # a seed (optforge seeds)
  optforge export examples/my_rule.py -o my_rule_optimizer.py"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a candidate, seed or rule file as a standalone torch.optim.Optimizer module",
        usage=USAGE,
        description="Write a run's candidate (by default the best: promoted first, else the best at\n"
        "train), a bundled seed or a rule .py file as one standalone module with a\n"
        "torch.optim.Optimizer subclass that needs only torch.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="a run directory, a seed name (see 'optforge seeds') or a rule .py file")
    p.add_argument("candidate", metavar="CANDIDATE_ID", nargs="?",
                   help="candidate id or unique prefix (run directories only)")
    p.add_argument("--best", action="store_true", help="the best promoted candidate, else the best at train (default)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="file to write")
    p.add_argument("--name", metavar="CLASS", default=None,
                   help="class name (default: DiscoveredOptimizer from a run, the seed's own name "
                        "(AdamW), or the rule file's name in CamelCase)")
    return p


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


def seed_class_name(source: str, seed: str) -> str:
    """The class name an exported seed gets by default: the name its docstring opens with, as the field
    writes it ("AdamW: ..." -> AdamW, "Schedule-Free AdamW: ..." -> ScheduleFreeAdamW, "MARS-AdamW
    (approx): ..." -> MARSAdamW, "SGD with ..." for sgd -> SGD), else the CamelCase of the seed's name."""
    import ast
    import re

    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except SyntaxError:
        doc = ""
    line = doc.partition("\n")[0]
    head, colon, _ = line.partition(":")
    name = re.sub(r"[^0-9A-Za-z]", "", re.sub(r"\(.*?\)", "", head)) if colon else ""
    if not colon and line.split()[:1] and line.split()[0].lower() == seed.lower():
        name = line.split()[0]  # "SGD with heavy-ball momentum." for the seed sgd
    return name[:1].upper() + name[1:] if name[:1].isalpha() else _camel(seed)


def run(args: argparse.Namespace) -> int:
    from optforge import seeds
    from optforge.cli import UserError
    from optforge.export import ExportInfo, choose_best, export_info_from_run, render_module
    from optforge.rule import RuleError

    src_path = Path(args.source)
    if src_path.is_dir():
        from optforge.store import Store, StoreError

        try:
            store = Store.open(src_path)
        except StoreError as e:
            raise UserError(str(e)) from None
        with store:
            cid = args.candidate
            if cid is None:
                cid = choose_best(store)
                if cid is None:
                    raise UserError(f"{src_path} has no candidate with an ok train result to export yet")
            try:
                cand = store.candidate(cid)
            except KeyError as e:
                raise UserError(str(e).strip("'\"")) from None
            info = export_info_from_run(store, cand.id)
            source, name = cand.source, args.name or "DiscoveredOptimizer"
    elif args.candidate or args.best:
        raise UserError(f"{args.source} is not a run directory; CANDIDATE_ID and --best apply to runs only")
    elif src_path.suffix == ".py" and src_path.is_file():
        from optforge.source_text import SourceDecodeError, read_source

        try:
            source = read_source(src_path)  # as Python reads it: a byte-order mark, CRLF, UTF-16 with a mark
        except (OSError, SourceDecodeError) as e:
            raise UserError(f"cannot read {src_path}: {e}") from None
        name = args.name or _camel(src_path.stem)
        info = ExportInfo(title=f"{name}: exported by optforge from {src_path.name}.")
    elif args.source in seeds.names():
        source = seeds.source(args.source)
        name = args.name or seed_class_name(source, args.source)
        info = ExportInfo(title=f"{name}: the optforge reference seed '{args.source}'.")
    else:
        raise UserError(f"'{args.source}' is not a run directory, a .py rule file or a seed name (see 'optforge seeds')")
    try:
        text = render_module(source, name, info)
    except (RuleError, ValueError) as e:
        raise UserError(str(e)) from None
    out = Path(args.output)
    write_text_atomic(out, text)
    print(f"wrote {out} (class {name}); use: from {out.stem} import {name}, param_groups")
    return 0
