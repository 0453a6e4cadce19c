"""The bundled reference optimizers, each a self-contained rule source (torch and math only).

They are the baselines a candidate must beat, the warm starts of a search and the examples an LLM
is shown. `names()`, `source(name)`, `load(name)`, `info(name)`.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from importlib import resources

import torch

from optforge.rule import Ctx, Rule, RuleError, load_rule


def names() -> list[str]:
    """Every bundled seed, sorted."""
    return sorted(
        f.name[:-3]
        for f in resources.files(__package__).iterdir()
        if f.name.endswith(".py") and not f.name.startswith("_")
    )


@functools.lru_cache(maxsize=None)
def source(name: str) -> str:
    """The rule source of seed `name`."""
    if name not in names():
        raise RuleError(f"unknown seed '{name}'; known seeds: {', '.join(names())}")
    return resources.files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")


def load(name: str) -> Rule:
    """The seed `name` as a loaded `Rule` (seeds are trusted code)."""
    return load_rule(source(name), name=name)


@dataclass(frozen=True)
class SeedInfo:
    name: str
    paper: str
    summary: str
    state_tensors: int  # per 2-D parameter (hidden_matrix role)
    hparams: dict


def info(name: str) -> SeedInfo:
    """Docstring facts and state size of a seed, for tables and prompts."""
    text = source(name)
    doc = ast.get_docstring(ast.parse(text)) or ""
    summary = doc.splitlines()[0] if doc else ""
    paper = next((ln.split(":", 1)[1].strip() for ln in doc.splitlines() if ln.lower().startswith("paper:")), "")
    rule = load(name)
    p = torch.zeros(4, 3)
    state = rule.init(p, Ctx(lr=rule.lr, t=1, T=None, role="hidden_matrix", shape=(4, 3)))
    n_tensors = sum(1 for v in state.values() if isinstance(v, torch.Tensor))
    return SeedInfo(name, paper, summary, n_tensors, dict(rule.hparams))
