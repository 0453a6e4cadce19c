from dataclasses import dataclass

import pytest

from optforge.config import LLMConfig, ModelWeight
from optforge.llm import LLMSettings


def test_unknown_key_named():
    with pytest.raises(ValueError, match="unknown llm config key.*modle"):
        LLMSettings.from_any({"modle": "x"})


def test_key_itself_in_api_key_env_is_refused():
    with pytest.raises(ValueError, match="NAME of the environment variable"):
        LLMSettings.from_any({"api_key_env": "sk-abc123"})


def test_prices_come_in_pairs():
    with pytest.raises(ValueError, match="both"):
        LLMSettings.from_any({"input_cost_per_token": 1e-6})


def test_engine_dataclass_is_accepted():
    cfg = LLMConfig(model=None, models=(ModelWeight("openai/a", 2.0), ModelWeight("openai/b", 1.0)),
                    bandit=True, concurrency=3, api_base="http://127.0.0.1:1/v1")
    s = LLMSettings.from_any(cfg)
    assert s.model == "openai/a" and s.bandit and s.concurrency == 3
    assert [(m.model, m.weight) for m in s.model_choices] == [("openai/a", 2.0), ("openai/b", 1.0)]


def test_plain_object_with_some_attributes():
    @dataclass
    class Section:
        model: str = "openai/x"
        temperature: float = 0.1

    s = LLMSettings.from_any(Section())
    assert s.temperature == 0.1 and s.max_tokens == 4096
