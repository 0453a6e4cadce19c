"""Prompt templates: text files in optforge/llm/prompts/, loaded by name, rendered with explicit fields.

A strategy's templates live in `prompts/<strategy>/` (`prompts/evolve/format_diff.txt`); templates
shared by strategies (`rule_contract.txt`) sit at the top. A template is named either by its path
without `.txt` (`evolve/format_diff`) or by its file name alone (`format_diff`), which must then be
unique in the tree.

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


def _root() -> Any:
    return resources.files(__package__).joinpath("prompts")


def template_names() -> list[str]:
    """Every bundled template by its path without `.txt`: `rule_contract`, `evolve/format_diff`, ..."""
    names = []
    for entry in _root().iterdir():
        if entry.is_dir():
            names += [f"{entry.name}/{f.name[:-4]}" for f in entry.iterdir() if f.name.endswith(".txt")]
        elif entry.name.endswith(".txt"):
            names.append(entry.name[:-4])
    return sorted(names)


def _bundled(name: str) -> Any:
    """The bundled resource of template `name` (a path without .txt, or a unique file name)."""
    if "/" not in name:
        found = [n for n in template_names() if n.rsplit("/", 1)[-1] == name]
        if len(found) > 1:
            raise PromptError(f"prompt template name '{name}' is ambiguous ({', '.join(found)}); name it by its path")
        name = found[0] if found else name
    return _root().joinpath(*f"{name}.txt".split("/"))


def load_template(name: str, template_dir: str | Path | None = None) -> str:
    """The text of template `name` (from `template_dir` when given and it has `<name>.txt` or the file
    of that name, else the bundled prompts). Raises PromptError when there is none."""
    if template_dir is not None:
        for path in (Path(template_dir) / f"{name}.txt", Path(template_dir) / f"{name.rsplit('/', 1)[-1]}.txt"):
            if path.is_file():
                return path.read_text(encoding="utf-8")
    res = _bundled(name)
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
