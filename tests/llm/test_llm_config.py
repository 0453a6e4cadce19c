"""The `llm` section: one dataclass (optforge.config.LLMConfig) for YAML, the engine and the client."""

import pytest

from optforge.config import ConfigError, LLMConfig, ModelWeight, config_from_dict
from optforge.llm import LLMClient, LLMConfigError


def test_unknown_key_named():
    with pytest.raises(ConfigError, match="unknown key 'llm.modle'"):
        LLMConfig.from_mapping({"modle": "x"})


def test_key_itself_in_api_key_env_is_refused():
    with pytest.raises(ConfigError, match="NAME of the environment variable"):
        LLMConfig.from_mapping({"api_key_env": "sk-abc123"})


def test_prices_come_in_pairs():
    with pytest.raises(ConfigError, match="both"):
        LLMConfig.from_mapping({"input_cost_per_token": 1e-6})


def test_every_client_key_is_settable_from_yaml():
    cfg = config_from_dict({"llm": {"model": "openai/x", "max_retries": 2, "backoff_s": 0.5, "max_backoff_s": 3,
                                    "extra": {"top_p": 0.9}}})
    assert cfg.llm.max_retries == 2 and cfg.llm.backoff_s == 0.5 and cfg.llm.max_backoff_s == 3.0
    assert cfg.llm.extra == {"top_p": 0.9}


def test_run_config_and_mapping_give_the_same_client_settings():
    """One set of defaults: the client built from a run config and from a bare mapping agree."""
    from_run = LLMClient(config_from_dict({"llm": {"model": "openai/x", "api_base": "http://127.0.0.1:1/v1",
                                                   "api_key_env": None}}))
    from_mapping = LLMClient({"model": "openai/x", "api_base": "http://127.0.0.1:1/v1", "api_key_env": None})
    assert from_run.settings == from_mapping.settings == LLMConfig(model="openai/x", api_base="http://127.0.0.1:1/v1",
                                                                   api_key_env=None)


def test_ensemble_from_the_run_config():
    cfg = LLMConfig(models=(ModelWeight("openai/a", 2.0), ModelWeight("openai/b", 1.0)),
                    bandit=True, concurrency=3, api_base="http://127.0.0.1:1/v1", api_key_env=None)
    client = LLMClient(cfg)
    assert client.models == ("openai/a", "openai/b") and client.settings.concurrency == 3
    assert [(m.model, m.weight) for m in client.settings.model_choices] == [("openai/a", 2.0), ("openai/b", 1.0)]


def test_no_model_is_a_config_error_naming_the_key():
    with pytest.raises(LLMConfigError, match="llm.model is not set"):
        LLMClient({"api_key_env": None})
