"""The suite registry: shipped suites by name, user suites by dotted path ("pkg.mod:fn").

Each shipped suite carries a version string. Bump it whenever a task, its steps, its data or the
training loop changes: scores and cached baselines compare only within one (suite, version).
"""

from __future__ import annotations

import importlib
from typing import Callable

from .base import Suite

SELECTION_SEEDS = (0, 1)
REPORT_SEEDS = (2, 3, 4)


def _smoke() -> Suite:
    from .smoke import SmokeMix, SmokeQuadratic

    return Suite(
        "smoke", "1", (SmokeQuadratic(), SmokeMix()), SELECTION_SEEDS, REPORT_SEEDS,
        "stage-0 gate: every parameter role once, well under 1 s per (lr, seed)",
    )


_BUILTIN: dict[str, Callable[[], Suite]] = {
    "smoke": _smoke,
}


def suite_names() -> list[str]:
    """The shipped suites."""
    return list(_BUILTIN)


_CACHE: dict[str, Suite] = {}


def get_suite(name_or_path: str) -> Suite:
    """A shipped suite by name, or a user suite by dotted path 'pkg.module:attr'.

    The attribute may be a `Suite` or a no-argument callable returning one.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"suite must be a name ({', '.join(_BUILTIN)}) or 'pkg.module:function', got {name_or_path!r}")
    key = name_or_path.strip()
    if key in _CACHE:
        return _CACHE[key]
    if key in _BUILTIN:
        suite = _BUILTIN[key]()
    elif ":" in key:
        suite = _load_dotted(key)
    else:
        raise ValueError(
            f"unknown suite '{key}'; shipped suites: {', '.join(_BUILTIN)}; "
            "for your own suite give a dotted path like 'mypkg.tasks:my_suite'"
        )
    _CACHE[key] = suite
    return suite


def _load_dotted(path: str) -> Suite:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ValueError(f"bad suite path '{path}'; use 'pkg.module:attribute', e.g. 'mypkg.tasks:my_suite'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"cannot import module '{module_name}' for suite '{path}': {e}; "
            "check the spelling and that the package is installed or on PYTHONPATH"
        ) from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module '{module_name}' has no attribute '{attr}' (suite '{path}')")
        obj = getattr(obj, part)
    if not isinstance(obj, Suite) and callable(obj):
        obj = obj()
    if not isinstance(obj, Suite):
        raise ValueError(
            f"'{path}' gave a {type(obj).__name__}, not an optforge Suite; "
            "return Suite(name, version, tasks, selection_seeds, report_seeds)"
        )
    return obj
