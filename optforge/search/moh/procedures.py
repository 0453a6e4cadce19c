"""Procedure sources: the built-in seeds (`optforge/search/moh/seeds/*.py`) or a file, and their idea.

A procedure is untrusted code, `improve(population, utility, llm, task)`, run only in the procedure
sandbox (`optforge.sandbox.procedure`); here it is only text.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

from optforge.source_text import read_source


def seed_names() -> list[str]:
    """The built-in seed procedures by name (`evolve`, `meta`, `polca`)."""
    root = resources.files(__package__).joinpath("seeds")
    return sorted(f.name[:-3] for f in root.iterdir() if f.name.endswith(".py") and not f.name.startswith("_"))


def load_procedure(name_or_path: str) -> str:
    """The source of built-in seed procedure `name_or_path`, or of the .py file it names (an
    `optforge export-procedure` output, say). Raises ValueError saying what is known."""
    if name_or_path in seed_names():
        return resources.files(__package__).joinpath("seeds", f"{name_or_path}.py").read_text(encoding="utf-8")
    path = Path(name_or_path).expanduser()
    if path.suffix == ".py" and path.is_file():
        try:
            return read_source(path)
        except ValueError as e:
            raise ValueError(f"procedure file {path}: {e}") from e
    raise ValueError(f"unknown procedure '{name_or_path}': give a built-in seed procedure "
                     f"({', '.join(seed_names())}) or the path of a .py file defining improve(population, utility, llm, task)")


def idea_of(source: str) -> str:
    """A procedure's one-sentence idea: the first line of its module docstring ("" if none or unparsable)."""
    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except (SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""
