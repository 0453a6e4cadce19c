"""OptoConfig: defaults, the mask, budgets, and the run config's checks naming `strategy.<key>`."""

from __future__ import annotations

import dataclasses

import pytest

from optforge.config import ConfigError
from optforge.search.opto.params import OptoConfig, SectionBudgets


def test_defaults():
    c = OptoConfig.from_params({})
    assert (c.memory_size, c.split_constants, c.chains, c.mask, c.detail) == (5, False, 1, (), "trace")
    assert c.budgets == SectionBudgets() and c.budgets.of("Others") == 2500 and c.budgets.of("Memory") == 12000


def test_mask_hides_sections_and_keys_round_trip():
    c = OptoConfig.from_params({"mask": ["Others", "#Code"], "budgets": {"others": 300}, "split_constants": True})
    assert c.mask == ("Others", "Code") and not c.shows("#Others") and not c.shows("Code") and c.shows("Inputs")
    assert c.budgets.others == 300 and c.budgets.code == SectionBudgets().code
    assert OptoConfig.from_params(dataclasses.asdict(c)) == c


@pytest.mark.parametrize("params, key", [
    ({"memory_size": 2.5}, "strategy.memory_size"),
    ({"split_constants": "yes"}, "strategy.split_constants"),
    ({"chains": "4"}, "strategy.chains"),
    ({"mask": "Others"}, "strategy.mask"),
    ({"detail": 3}, "strategy.detail"),
    ({"budgets": {"others": 1e3}}, "strategy.budgets.others"),
    ({"budgets": {"trace": 100}}, "strategy.budgets.trace"),
    ({"budgets": 500}, "strategy.budgets"),
    ({"memory": 5}, "strategy.memory"),
])
def test_wrong_types_and_unknown_keys_name_the_key(params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        OptoConfig.from_params(params)


@pytest.mark.parametrize("params, message", [
    ({"memory_size": -1}, r"strategy\.memory_size=-1 must be >= 0"),
    ({"chains": 0}, r"strategy\.chains=0 must be >= 1"),
    ({"minibatch": 0}, r"strategy\.minibatch=0 must be >= 1 \(tasks per oracle evaluation\) or null"),
    ({"detail": "full"}, r"strategy\.detail='full' must be one of summary, trace"),
    ({"mask": ["Feedback"]}, r"strategy\.mask: 'Feedback' cannot be masked \(OptoPrime optimizes with it\)"),
    ({"mask": ["Trace"]}, r"strategy\.mask: 'Trace' cannot be masked; maskable sections: Code, Documentation"),
    ({"budgets": {"code": 10}}, r"strategy\.budgets\.code=10 must be >= 80 characters"),
])
def test_bad_values_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        OptoConfig.from_params(params)
