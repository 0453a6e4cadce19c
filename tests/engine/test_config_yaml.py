"""Config files are YAML 1.2: numbers in scientific notation without a dot are numbers.

Public case: allenai/allennlp#1429 and salesforce/ALBEF#128 (PyYAML, a YAML 1.1 reader, returns the
string '5e-7', and the config then rejects a correct price as "must be a number").
"""

import pytest

from optforge.config import ConfigError, load_config


def _load(tmp_path, text, overrides=()):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, list(overrides))


def test_scientific_notation_in_a_file_reads_as_numbers(tmp_path):
    cfg = _load(tmp_path, "strategy: {name: seeds}\n"
                          "llm: {input_cost_per_token: 5e-7, output_cost_per_token: 1E-6}\n"
                          "budget: {max_seconds: 3E4, max_dollars: 1e-3}\n")
    assert cfg.llm.input_cost_per_token == pytest.approx(5e-7)
    assert cfg.llm.output_cost_per_token == pytest.approx(1e-6)
    assert cfg.budget.max_seconds == pytest.approx(3e4)
    assert cfg.budget.max_dollars == pytest.approx(1e-3)


def test_scientific_notation_in_a_set_override_reads_as_a_number(tmp_path):
    cfg = _load(tmp_path, "strategy: {name: seeds}\n", ["llm.input_cost_per_token=5e-7", "llm.output_cost_per_token=1E-6"])
    assert cfg.llm.input_cost_per_token == pytest.approx(5e-7) and cfg.llm.output_cost_per_token == pytest.approx(1e-6)


def test_a_yaml_1_1_boolean_word_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match=r"deterministic='yes' must be true or false \(YAML 1.2"):
        _load(tmp_path, "strategy: {name: seeds}\ndeterministic: yes\n")


def test_bad_yaml_is_a_config_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="is not valid YAML"):
        _load(tmp_path, "strategy: {name: seeds\n")


def test_strategy_keys_are_typed_like_the_run_config(tmp_path):
    # scientific notation without a dot: `diff_prob: 6e-1` is 0.6; `islands: 2.5` is refused naming the key,
    # before the missing LLM is reported
    from optforge.search.evolve.config import EvolveConfig

    cfg = _load(tmp_path, "strategy: {name: evolve, diff_prob: 6e-1, islands: 3}\n")
    params = EvolveConfig.from_params(cfg.strategy_params)
    assert params.diff_prob == pytest.approx(0.6) and params.islands == 3
    with pytest.raises(ValueError, match=r"strategy\.islands=2\.5 must be an integer"):
        EvolveConfig.from_params({"islands": 2.5})
    with pytest.raises(ValueError, match=r"unknown key 'strategy\.islandz'"):
        EvolveConfig.from_params({"islandz": 2})
