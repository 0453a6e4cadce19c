"""The `optforge` command. Each subcommand lives in `optforge.commands.<name>` with
`add_parser(subparsers)` and `run(args) -> int`; heavy imports stay inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from optforge import __version__

COMMANDS = ("run", "ls", "show", "eval", "baselines", "seeds", "export", "export_procedure", "report", "doctor")


class UserError(Exception):
    """An expected error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optforge", description="Discover neural-network optimizers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"optforge {__version__}",
                        help="print optforge's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"optforge.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"optforge.commands.{name}":
                raise
            continue
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"optforge {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`optforge show RUN | head`): not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
