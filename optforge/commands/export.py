"""`optforge export`: write a discovered rule (or any seed or rule file) as a standalone optimizer."""

from __future__ import annotations

import argparse
from pathlib import Path

from optforge.files import write_text_atomic


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a candidate, seed or rule file as a standalone torch.optim.Optimizer module",
        description="optforge export RUN_DIR [CANDIDATE_ID | --best] -o my_optimizer.py [--name ClassName]\n"
        "optforge export SEED_NAME_OR_RULE_FILE -o my_optimizer.py",
    )
    p.add_argument("source", help="a run directory, a seed name (see 'optforge seeds') or a rule .py file")
    p.add_argument("candidate", nargs="?", help="candidate id or unique prefix (run directories only)")
    p.add_argument("--best", action="store_true", help="the best promoted candidate, else the best at train (default)")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.add_argument("--name", default=None, help="class name (default: DiscoveredOptimizer, or the seed's CamelCase name)")
    return p


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


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
        source, name = seeds.source(args.source), args.name or _camel(args.source)
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
