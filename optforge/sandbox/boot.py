"""The first code of every interpreter the sandbox starts (the warm template, a cold worker, a
procedure host): `python .../optforge/sandbox/boot.py -m MODULE ARGS...` (or `-c CODE ARGS...`).

It sets `sys.path` to the caller's import path (OPTFORGE_SYS_PATH, made by
`transport.import_path`: the interpreter's standard library first, then the caller's other entries in
the caller's order), then runs MODULE as `python -m` would. The path is not passed as PYTHONPATH,
whose entries come before the standard library from the interpreter's first import on: a caller run
from a directory holding a `re.py` or `types.py` (`python -m optforge` puts its working directory on
`sys.path`) would have every sandboxed interpreter import that file instead of the standard module,
and die at start. Set here, after start, the standard library always wins, and the caller's own
modules (a user suite `mypkg.tasks:suite` next to the caller) still import.

This file is run by path, so it imports nothing of optforge before the path is set; the directory of
a script run by path (optforge/sandbox) is taken off `sys.path` first.
"""

from __future__ import annotations

import os
import sys

PATH_ENV = "OPTFORGE_SYS_PATH"


def set_sys_path(paths: list[str]) -> None:
    """`paths` first, in their order, then this process's other entries (none of them twice)."""
    sys.path[:] = list(dict.fromkeys([*paths, *sys.path]))


def main(argv: list[str]) -> None:
    kind, target, rest = argv[0], argv[1], argv[2:]
    if kind == "-m":
        import runpy

        sys.argv = [target, *rest]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif kind == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        raise SystemExit(f"usage: boot.py -m MODULE ARGS... | -c CODE ARGS... (got {kind!r})")


if __name__ == "__main__":
    here = os.path.dirname(os.path.realpath(__file__))  # optforge/sandbox: modules named `template`, `protocol`
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    set_sys_path([p for p in os.environ.pop(PATH_ENV, "").split(os.pathsep) if p])
    main(sys.argv[1:])
