"""What every LLM strategy's factory does first: read its typed config, and refuse a run without an LLM."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, TypeVar

from optforge.search.context import StrategyContext


class _FromParams(Protocol):
    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Any: ...


C = TypeVar("C", bound=_FromParams)


def llm_strategy_config(name: str, config_cls: type[C], params: Mapping[str, Any], ctx: StrategyContext) -> C:
    """`config_cls.from_params(params)` (a bad key raises ValueError naming `strategy.<key>`), checked
    before the LLM so a config error is reported first; ValueError saying how to configure one when the
    run has no LLM client (`ctx.llm_client`)."""
    config = config_cls.from_params(params)
    if ctx.llm_client is None:
        raise ValueError(f"strategy '{name}' needs an LLM: configure the llm section (model, api_key_env, or "
                         "replay: RUN_DIR to run offline)")
    return config
