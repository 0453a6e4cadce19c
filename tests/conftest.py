"""Session-wide checks: the tests exercise the installed optforge, never the checkout on sys.path.

With `--import-mode=importlib` (pyproject addopts) pytest itself adds nothing to sys.path, so a
checkout root found there came from the way the tests were started (`python -m pytest` in the
checkout puts the working directory first): `import optforge` would then bypass the installed
package (its import hook, its package data), which is exactly what users do not do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]


def checkout_on_path(path: list[str]) -> list[str]:
    """The entries of `path` that are the checkout root ('' means the working directory)."""
    return [p for p in path if Path(p or os.getcwd()).resolve() == CHECKOUT]


def pytest_configure(config: pytest.Config) -> None:
    found = checkout_on_path(sys.path)
    if found:
        raise pytest.UsageError(
            f"the checkout root {CHECKOUT} is on sys.path ({found[0]!r}), so the tests would import the "
            "checkout instead of the installed optforge. Run `pytest` (not `python -m pytest`, which adds "
            "the working directory) from the checkout, or `python -m pytest` from another directory."
        )
