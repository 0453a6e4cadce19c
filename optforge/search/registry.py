"""Strategy names -> factories. The engine builds strategies only through `build_strategy`, so it
depends on the `Strategy` protocol and this table, never on a strategy package.

Each entry is "module:function", a `from_config(params, ctx: StrategyContext) -> Strategy` that
declares the services it needs with `@needs(...)` (optforge.search.context); a config may also name
its own factory by dotted path (`strategy: {name: "mypkg.search:from_config"}`). A new strategy is a
folder `optforge/search/<name>/` with such a factory and one line here (docs/strategies.md).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from optforge.search.base import Strategy
from optforge.search.context import StrategyContext, call_factory, needed

STRATEGIES: dict[str, str] = {
    "seeds": "optforge.search.seedlist:from_config",
    "symbolic": "optforge.search.symbolic:from_config",
    "evolve": "optforge.search.evolve:from_config",
    "opto": "optforge.search.opto:from_config",
    "polca": "optforge.search.polca:from_config",
    "moh": "optforge.search.moh:from_config",
}


def needs_of(name: str) -> frozenset[str]:
    """The services strategy `name` declared (`@needs`): what `optforge run` must build for it."""
    return needed(resolve(name))


def resolve(name: str) -> Callable[..., Strategy]:
    """The `from_config` factory of strategy `name` (a registry name or "pkg.mod:function"). Raises
    ValueError naming `strategy.name`, what failed and what to do."""
    target = STRATEGIES.get(name)
    if target is None:
        if ":" not in name:
            hint = "; a factory of your own is named 'package.module:function'"
            if "." in name:
                module_name, _, attr = name.rpartition(".")
                hint = f"; did you mean '{module_name}:{attr}'? (the function follows a colon)"
            raise ValueError(f"strategy.name: unknown strategy '{name}'; known: {', '.join(STRATEGIES)}{hint}")
        target = name
    module_name, _, attr = target.partition(":")
    module = _import(name, module_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"strategy.name '{name}': module {module_name} ({getattr(module, '__file__', '?')}) has no "
                         f"callable '{attr}'; name a function that takes (params, ctx) and returns a strategy")
    return factory


def _import(name: str, module_name: str) -> Any:
    """Import the module of a strategy factory, turning each way it can fail into what to do about it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ValueError(
                f"strategy.name '{name}': no module named '{missing}' on Python's path. The `optforge` command "
                "does not search the current directory: install the package that holds it (pip install -e "
                "PROJECT_DIR), or put the directory that contains it on PYTHONPATH (PYTHONPATH=DIR optforge run "
                "...)") from e
        raise ValueError(f"strategy.name '{name}': importing {module_name} failed: it imports '{missing}', which is "
                         f"not installed ({e}); install it into this environment (pip install ...)") from e
    except Exception as e:  # noqa: BLE001 - a broken module: say which error, where
        where = f" ({e.filename}, line {e.lineno})" if isinstance(e, SyntaxError) else ""
        raise ValueError(f"strategy.name '{name}': importing {module_name} raised {type(e).__name__}: {e}{where}; "
                         "fix that module (python -c 'import " + module_name + "' shows the traceback)") from e


def build_strategy(name: str, params: Mapping[str, Any], ctx: StrategyContext | None = None, *, seed: int = 0,
                   llm: Any = None) -> Strategy:
    """Build and check a strategy with `ctx` (or a context made of `seed` and `llm`); a bad strategy key
    raises ValueError naming `strategy.<key>`."""
    factory = resolve(name)
    ctx = ctx if ctx is not None else StrategyContext(seed=seed, llm_client=llm)
    ctx.declared = needed(factory)
    try:
        strategy = call_factory(factory, dict(params), ctx, name=name)
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith("strategy") else f"strategy ({name}): {msg}") from e
    missing = [m for m in ("propose", "observe", "done", "state", "load_state") if not callable(getattr(strategy, m, None))]
    if missing:
        raise ValueError(f"strategy '{name}' does not implement the Strategy protocol: missing {', '.join(missing)}")
    return strategy
