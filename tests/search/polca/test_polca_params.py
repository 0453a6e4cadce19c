"""PolcaConfig: the reference defaults, and the run config's checks naming `strategy.<key>`."""

from __future__ import annotations

import dataclasses

import pytest

from optforge.config import ConfigError
from optforge.search.polca.params import PolcaConfig


def test_defaults_are_the_polca_experiments():
    c = PolcaConfig.from_params({})
    assert (c.num_candidates, c.batch_size, c.num_batches, c.num_proposals) == (5, 2, 1, 1)
    assert (c.priority, c.ucb_constant, c.embedding, c.memory_size) == ("mean", 1.0, "behaviour", None)
    assert c.warm_start == ("adamw",) and not c.validation_minibatch
    assert c.epsilon is None and c.epsilon_value == 1e-3 and c.uses_epsilon_net
    assert c.uses_summarizer and c.summarize_every == 1 and c.summary_candidates == 5
    assert c.success_threshold == 0.0 and c.min_rollouts == 4 and c.minibatch_size == 2


def test_epsilon_default_follows_the_embedding_and_zero_turns_the_net_off():
    assert PolcaConfig.from_params({"embedding": "text"}).epsilon_value == 0.1
    assert PolcaConfig.from_params({"embedding": "text-local", "epsilon": 0.02}).epsilon_value == 0.02
    off = PolcaConfig.from_params({"epsilon": 0, "summarize_every": 0})
    assert off.epsilon == 0.0 and isinstance(off.epsilon, float)
    assert not off.uses_epsilon_net and not off.uses_summarizer


def test_lists_become_tuples_and_keys_round_trip():
    c = PolcaConfig.from_params({"warm_start": ["adamw", "lion"], "num_batches": 3, "priority": "ucb"})
    assert c.warm_start == ("adamw", "lion") and c.minibatch_size == 6
    assert PolcaConfig.from_params(dataclasses.asdict(c)) == c


@pytest.mark.parametrize("params, key", [
    ({"num_candidates": 2.5}, "strategy.num_candidates"),
    ({"epsilon": "small"}, "strategy.epsilon"),
    ({"validation_minibatch": "yes"}, "strategy.validation_minibatch"),
    ({"warm_start": "adamw"}, "strategy.warm_start"),
    ({"memory_size": 1.5}, "strategy.memory_size"),
    ({"epsilon_net": True}, "strategy.epsilon_net"),
])
def test_wrong_types_and_unknown_keys_name_the_key(params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        PolcaConfig.from_params(params)


@pytest.mark.parametrize("params, message", [
    ({"num_candidates": 0}, r"strategy\.num_candidates=0 must be >= 1"),
    ({"epsilon": -0.1}, r"strategy\.epsilon=-0\.1 must be a finite number >= 0"),
    ({"embedding": "code"}, r"strategy\.embedding='code' must be one of behaviour, text, text-local"),
    ({"priority": "lcb"}, r"strategy\.priority='lcb' must be one of mean, ucb"),
    ({"detail": "full"}, r"strategy\.detail='full' must be one of summary, trace"),
    ({"warm_start": ["adamw", "nope"]}, r"unknown seed 'nope'"),
    ({"warm_start": []}, r"strategy\.warm_start must name at least one seed"),
    ({"memory_size": 3}, r"strategy\.memory_size=3 must be >= strategy\.num_candidates \(5\)"),
    ({"summarize_every": -1}, r"strategy\.summarize_every=-1 must be >= 0"),
])
def test_bad_values_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        PolcaConfig.from_params(params)
