"""The LLM strategies' factories share one first step (`optforge.search.common.factory`): the typed
config, then the LLM check, each error naming the strategy."""

from __future__ import annotations

import pytest

from optforge.search.context import StrategyContext
from optforge.search.registry import build_strategy


@pytest.mark.parametrize("name", ["evolve", "opto", "polca"])
def test_an_llm_strategy_without_an_llm_is_refused_naming_it(name):
    with pytest.raises(ValueError, match=rf"strategy '{name}' needs an LLM: configure the llm section"):
        build_strategy(name, {}, StrategyContext.of(seed=0))


@pytest.mark.parametrize("name", ["evolve", "opto", "polca"])
def test_a_bad_key_is_reported_before_the_missing_llm(name):
    with pytest.raises(ValueError, match=r"strategy\.no_such_key"):
        build_strategy(name, {"no_such_key": 1}, StrategyContext.of(seed=0))
