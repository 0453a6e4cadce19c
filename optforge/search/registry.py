"""Strategy names -> factories. The engine builds strategies only through `build_strategy`, so it
depends on the `Strategy` protocol and this table, never on a strategy package.

Each entry is "module:function", a `from_config(params, *, seed, llm=None) -> Strategy`; a config may
also name its own factory by dotted path (`strategy: {name: "mypkg.search:from_config"}`).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from optforge.search.base import Strategy

STRATEGIES: dict[str, str] = {
    "seeds": "optforge.search.seedlist:from_config",
    "symbolic": "optforge.search.symbolic:from_config",
    "evolve": "optforge.search.evolve:from_config",
}

LLM_STRATEGIES = frozenset({"evolve", "polca", "opto", "moh"})
"""Strategies that need an LLM client passed in."""


def resolve(name: str) -> Callable[..., Strategy]:
    """The `from_config` factory of strategy `name` (a registry name or "pkg.mod:function")."""
    target = STRATEGIES.get(name)
    if target is None:
        if ":" not in name:
            raise ValueError(f"strategy.name: unknown strategy '{name}'; known: {', '.join(STRATEGIES)}"
                             " (or a 'package.module:from_config' path)")
        target = name
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(f"strategy '{name}' cannot be imported ({e}); is it installed?") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"strategy '{name}': {module_name} has no callable '{attr}'")
    return factory


def build_strategy(name: str, params: Mapping[str, Any], *, seed: int, llm: Any = None) -> Strategy:
    """Build and check a strategy; a bad strategy key raises ValueError naming `strategy.<key>`."""
    factory = resolve(name)
    try:
        strategy = factory(dict(params), seed=seed, llm=llm)
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith("strategy") else f"strategy ({name}): {msg}") from e
    missing = [m for m in ("propose", "observe", "done", "state", "load_state") if not callable(getattr(strategy, m, None))]
    if missing:
        raise ValueError(f"strategy '{name}' does not implement the Strategy protocol: missing {', '.join(missing)}")
    return strategy
