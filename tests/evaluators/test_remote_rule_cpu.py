"""The rule process's CPU time, read by the trainer from /proc (benchmarks/sandbox_overhead.py uses it):
one figure per run, recorded before the process is killed, and nothing for a run whose rule failed to load."""

from __future__ import annotations

import pytest

from optforge import seeds
from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.train import train_rule

QUAD = {t.name: t for t in get_suite("smoke").tasks}["smoke_quad"]


def test_each_run_records_its_rule_process_cpu(host):
    rule = RemoteRuleSource(host, seeds.source("adamw"), "adamw", cpu_s=[])
    for seed in (0, 1):
        train_rule(QUAD, rule, lr=1e-3, seed=seed, steps=3)
    assert len(rule.cpu_s) == 2 and all(c > 0 for c in rule.cpu_s), rule.cpu_s


def test_a_rule_that_fails_to_load_records_nothing(host):
    rule = RemoteRuleSource(host, "import torch\nLR = 1e-3\nraise ValueError('broken')\n", cpu_s=[])
    with pytest.raises(RuleProcessError):
        train_rule(QUAD, rule, lr=1e-3, seed=0, steps=3)
    assert rule.cpu_s == []
