"""Prompt templates: text files in optforge/llm/prompts/, loaded by name, rendered with explicit fields.

Templates use `$name` placeholders (string.Template), so code with braces needs no escaping. Rendering
checks both ways: a placeholder without a field and a field the template does not use are errors.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any


class PromptError(ValueError):
    """A template is missing or does not match the fields given."""


def template_names() -> list[str]:
    return sorted(f.name[:-4] for f in resources.files(__package__).joinpath("prompts").iterdir()
                  if f.name.endswith(".txt"))


def load_template(name: str, template_dir: str | Path | None = None) -> str:
    """The text of template `name` (from `template_dir` when given, else the bundled prompts)."""
    if template_dir is not None:
        path = Path(template_dir) / f"{name}.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    res = resources.files(__package__).joinpath("prompts", f"{name}.txt")
    if not res.is_file():
        where = f"{template_dir} or " if template_dir else ""
        raise PromptError(f"no prompt template '{name}' in {where}optforge/llm/prompts/; known: {', '.join(template_names())}")
    return res.read_text(encoding="utf-8")


def placeholders(text: str) -> set[str]:
    names = set()
    for m in string.Template.pattern.finditer(text):
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
        elif m.group("invalid") is not None:
            raise PromptError(f"bad '$' at offset {m.start()} in a template; write '$$' for a literal dollar")
    return names


def render(name: str, template_dir: str | Path | None = None, **fields: Any) -> str:
    """Render template `name` with exactly the placeholders it uses."""
    text = load_template(name, template_dir)
    need = placeholders(text)
    missing = sorted(need - set(fields))
    extra = sorted(set(fields) - need)
    if missing:
        raise PromptError(f"template '{name}' needs field(s) {', '.join(missing)}")
    if extra:
        raise PromptError(f"template '{name}' has no placeholder(s) for {', '.join(extra)}")
    return string.Template(text).substitute({k: str(v) for k, v in fields.items()})
