"""Where a job process must be able to read from to import what the calling process imports."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Iterable


def import_locations(modules: Iterable[str] = ()) -> list[str]:
    """The real paths a job process must see to import what this process imports: every sys.path
    entry, the interpreter's prefixes, and the location of every loaded top-level package and of the
    top-level package of each of `modules` ("pkg.mod" names, resolved here if not loaded).

    An editable install keeps its package outside sys.path, behind an import hook, so sys.path alone
    misses it; the package's own `__path__` / `__file__` does not. Sorted, real, existing paths."""
    paths = tuple(p or os.getcwd() for p in sys.path if isinstance(p, str))
    names = frozenset({n for n in list(sys.modules) if "." not in n} | {m.partition(".")[0] for m in modules if m})
    key = (paths, names)
    if _located[0] != key:  # the same imports give the same answer: computed once per change (~25 ms)
        found = [*paths, sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
        for name in sorted(names):
            found += _package_locations(name)
        _located[:] = [key, sorted({os.path.realpath(p) for p in found if p and os.path.exists(p)})]
    return list(_located[1])


_located: list = [None, []]  # [(sys.path, top-level names), locations]: the last answer of import_locations


def _package_locations(name: str) -> list[str]:
    """Where top-level module `name` lives: its package directories, or its file's directory."""
    try:
        module = sys.modules.get(name)
        if module is not None:
            paths = list(getattr(module, "__path__", None) or [])
            origin = getattr(module, "__file__", None)
        else:
            spec = importlib.util.find_spec(name)
            if spec is None:
                return []
            paths = list(spec.submodule_search_locations or [])
            origin = spec.origin if spec.has_location else None
    except Exception:  # noqa: BLE001 - an odd module (lazy proxy, broken finder) has no location to give
        return []
    if origin and not paths:
        paths = [os.path.dirname(origin)]
    return [p for p in paths if isinstance(p, str)]
