"""Config: YAML -> frozen dataclasses; bad keys and values fail naming the dotted key."""

from __future__ import annotations

import pytest

from optforge.config import ConfigError, LLMConfig, RunConfig, config_from_dict, load_config


def test_defaults_and_round_trip(tmp_path):
    cfg = load_config(None)
    assert cfg.strategy_name == "seeds" and cfg.suite == "train" and cfg.slots == 2
    assert [s.name for s in cfg.stages] == ["smoke", "train", "train_fresh_seeds", "heldout"]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    path.write_text("strategy: {name: symbolic, population: 50}\nbudget: {max_candidates: 20}\n"
                    "stages: [smoke, train, {name: train_fresh_seeds, top_k: 2}, {name: heldout, suite: heldout_tiny}]\n"
                    "llm: {models: [{model: a/b, weight: 2}]}\nsandbox: {require: [pid]}\n")
    cfg = load_config(path)
    assert cfg.strategy_params == {"population": 50} and cfg.budget.max_candidates == 20
    assert cfg.stage("train_fresh_seeds").top_k == 2 and cfg.stage("heldout").suite == "heldout_tiny"
    assert cfg.llm.models[0].weight == 2.0 and cfg.sandbox.require == ("pid",)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data, key", [
    ({"budgt": {}}, "'budgt'"),
    ({"budget": {"max_evals": 3}}, "'budget.max_evals'"),
    ({"slots": "2"}, "slots='2'"),
    ({"slots": 0}, "slots=0"),
    ({"deterministic": 1}, "deterministic=1"),
    ({"llm": {"temperature": 5}}, "llm.temperature"),
    ({"llm": {"models": [{"model": "x", "wieght": 1}]}}, "'llm.models[0].wieght'"),
    ({"sandbox": {"timeout_s": -1}}, "sandbox.timeout_s"),
    ({"ray": {"adress": "auto"}}, "'ray.adress'"),
    ({"stages": ["smoke", "bogus"]}, "unknown stage 'bogus'"),
    ({"stages": ["train", "smoke"]}, "out of order"),
    ({"stages": ["smoke", "heldout"]}, "'heldout' needs 'train_fresh_seeds'"),
    ({"strategy": {"population": 3}}, "strategy.name"),
    ({"budget": {"max_seconds": "1h"}}, "budget.max_seconds"),
])
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert key in str(e.value)


def test_set_overrides_use_the_same_checks(tmp_path):
    cfg = config_from_dict({}, ["budget.max_candidates=7", "suite=smoke", "stages=[smoke, train]",
                                "strategy.seeds=[adamw, sgd]", "ray.address=auto"])
    assert cfg.budget.max_candidates == 7 and cfg.suite == "smoke" and [s.name for s in cfg.stages] == ["smoke", "train"]
    assert cfg.strategy == {"name": "seeds", "seeds": ["adamw", "sgd"]} and cfg.ray.address == "auto"
    with pytest.raises(ConfigError, match="'budget.max_evaluatons'"):
        config_from_dict({}, ["budget.max_evaluatons=3"])
    with pytest.raises(ConfigError, match="slots='many'"):
        config_from_dict({}, ["slots=many"])
    with pytest.raises(ConfigError, match="section.key=value"):
        config_from_dict({}, ["slots"])
    with pytest.raises(ConfigError, match="slots="):
        config_from_dict({}, ["slots.x=1"])


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_strategy_keys_are_checked_by_the_strategy():
    from optforge.search.registry import build_strategy

    with pytest.raises(ValueError, match="strategy.sedes"):
        build_strategy("seeds", {"sedes": ["adamw"]}, seed=0)
    with pytest.raises(ValueError, match="unknown seed 'adamx'"):
        build_strategy("seeds", {"seeds": ["adamx"]}, seed=0)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        build_strategy("nope", {}, seed=0)


# ---------------------------------------------------------------------------------------------
# every key refuses a value of the wrong type, naming the key (new keys are covered automatically)


def _wrong_value(tp):
    """A value of the wrong type for annotation `tp` (never None, which an Optional key accepts)."""
    import collections.abc
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _wrong_value(next(a for a in args if a is not type(None)))
    if tp is bool:
        return "yes"
    if tp is int:
        return 2.5
    if tp is float:
        return "fast"
    if tp is str:
        return 5
    if origin is tuple:
        return 7
    if origin in (collections.abc.Mapping, dict) or tp in (dict, collections.abc.Mapping):
        return [1]
    raise AssertionError(f"no wrong value for {tp}; give the key a checked type (not Any)")


def _keys(cls):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    return [(cls, f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _strategy_param_classes():
    from optforge.search.evolve.config import EvolveConfig
    from optforge.search.seedlist import SeedsParams
    from optforge.search.symbolic.params import SymbolicParams

    return [SeedsParams, SymbolicParams, EvolveConfig]


@pytest.mark.parametrize("cls, key, tp", [k for c in _strategy_param_classes() for k in _keys(c)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_strategy_key_refuses_a_wrong_type(cls, key, tp):
    with pytest.raises(ConfigError) as e:
        cls.from_params({key: _wrong_value(tp)})
    assert f"strategy.{key}" in str(e.value)


@pytest.mark.parametrize("key, tp", [(k, t) for _, k, t in _keys(LLMConfig)])
def test_every_llm_key_refuses_a_wrong_type(key, tp):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"llm": {key: _wrong_value(tp)}})
    assert f"llm.{key}" in str(e.value)


@pytest.mark.parametrize("name, params, key", [
    ("evolve", {"islands": 2.5}, "strategy.islands=2.5"),
    ("evolve", {"diff_prob": "6e-1"}, "strategy.diff_prob='6e-1'"),
    ("symbolic", {"population": 1.5}, "strategy.population=1.5"),
    ("symbolic", {"warm_start": "adamw"}, "strategy.warm_start='adamw'"),
    ("seeds", {"seeds": "adamw"}, "strategy.seeds='adamw'"),
    ("seeds", {"sedes": ["adamw"]}, "'strategy.sedes'"),
])
def test_each_strategy_factory_uses_the_typed_builder(name, params, key):
    from optforge.search.registry import build_strategy

    with pytest.raises(ValueError) as e:
        build_strategy(name, params, seed=0)
    assert key in str(e.value)
