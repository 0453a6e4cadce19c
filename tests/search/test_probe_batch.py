"""`rule_probes`: many sources in one sandbox job (`optforge.search.probe`), each in a rule process of its
own. Each source's result is what the rule computes (checked against the same probe run in this process,
on the loaded rule), whatever ran before it in the batch; a source that fails fails alone."""

from __future__ import annotations

import numpy as np
import pytest

from optforge import seeds
from optforge.rule import load_rule
from optforge.search.probe import (PROBE_TENSORS, Probe, ProbeFailed, _probe_inputs, probe_updates, rule_probe,
                                   rule_probes)

ADAMW, LION = seeds.source("adamw"), seeds.source("lion")
# updates drawn from torch's global generator: in a process shared with an earlier source they would
# depend on how many numbers that source drew
NOISE = '''import torch
LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    return -ctx.lr * torch.randn(g.shape)
'''
DRAWS = NOISE.replace("LR = 1e-3\n", "LR = 1e-3\n_ = torch.randn(100000)\n")  # draws at load, then the same
FAILS_AT_LOAD = ADAMW + "\nraise ValueError('broken at load')\n"
HANGS = ADAMW + "\nwhile True:\n    pass\n"


def trusted(source: str) -> dict[str, np.ndarray]:
    """The probe's updates with the rule loaded in this process (the bundled seeds only: trusted code)."""
    return probe_updates(load_rule(source, name="candidate"), *_probe_inputs(20260))


def same(probe: Probe, updates: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(probe.updates[name], updates[name]) for name, *_ in PROBE_TENSORS)


def test_each_source_of_a_batch_gets_its_own_result_and_its_own_process():
    out = rule_probes([ADAMW, DRAWS, NOISE, FAILS_AT_LOAD, "import os\nLR = 1e-3\n", LION, ADAMW])
    adamw, draws, noise, broken, rejected, lion, adamw_again = out
    assert same(adamw, trusted(ADAMW)) and same(lion, trusted(LION)) and same(adamw_again, trusted(ADAMW))
    assert not same(lion, trusted(ADAMW))
    # a fresh process each: the draws of the source before it (which move its own updates) do not move
    # this one's generator, so it gets what it gets probed alone
    assert not same(noise, draws.updates) and not np.allclose(noise.updates["vector"][0], noise.updates["vector"][1])
    assert same(noise, rule_probe(NOISE).updates)
    assert isinstance(broken, ProbeFailed) and "broken at load" in str(broken)
    assert isinstance(rejected, ProbeFailed) and "import of 'os'" in str(rejected)


def test_the_old_single_source_call_raises_with_the_reason():
    assert same(rule_probe(LION), trusted(LION))
    with pytest.raises(ProbeFailed, match="broken at load"):
        rule_probe(FAILS_AT_LOAD)


@pytest.mark.slow
def test_a_rule_that_hangs_is_killed_at_its_time_and_the_next_source_is_still_probed():
    hangs, after = rule_probes([HANGS, LION], timeout_s=5.0)
    assert isinstance(hangs, ProbeFailed) and "ran past its 5 s" in str(hangs)
    assert same(after, trusted(LION))
