"""A rule process that fails while its rule loads leaves nothing open in the trainer: no file descriptor,
no mapping of the memfd. A probe job starts one rule process per source, so a leak per failure would
cap how many sources one job can take (its open-file limit is 256)."""

from __future__ import annotations

import os

import pytest
import torch

from optforge.evaluators.remote_rule import RemoteRule, RuleProcessError

# each fails in its rule process before the trainer's handle exists: an exception at load, a module that
# is no rule (no update), and a process that dies at load without a record
FAILS_AT_LOAD = "import torch\nLR = 1e-3\nraise ValueError('broken at load')\n"
NOT_A_RULE = "import torch\nLR = 1e-3\n"
EXITS_AT_LOAD = ("import torch\nLR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n"
                 "    return g\ntorch.os._exit(3)\n")
FAILURES = (FAILS_AT_LOAD, NOT_A_RULE, EXITS_AT_LOAD)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def memfd_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum("memfd:optforge-rule" in line for line in f)


def groups() -> list[dict]:
    return [{"params": [torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(3))]}]


def test_failed_loads_leave_no_descriptor_and_no_mapping(host):
    with pytest.raises(RuleProcessError):  # the first one outside the count: lazy imports, the host's spare
        RemoteRule(host, FAILS_AT_LOAD, "broken", {}, groups())
    fds, maps = open_fds(), memfd_maps()
    reasons = set()
    for k in range(60):  # before the fix each failure left 4 fds open: 60 of them in a probe job neared its 256
        with pytest.raises(RuleProcessError) as e:
            RemoteRule(host, FAILURES[k % len(FAILURES)], "broken", {}, groups())
        reasons.add(e.value.reason)
    assert reasons == {"load_error", "exit:3"}, reasons
    assert open_fds() - fds == set(), sorted(open_fds() - fds)
    assert memfd_maps() == maps == 0


def test_a_closed_rule_leaves_nothing_and_closing_twice_is_harmless(host):
    fds = open_fds()
    rule = RemoteRule(host, "import torch\nLR = 1e-3\ndef init(p, ctx):\n    return {}\n"
                            "def update(p, g, state, ctx):\n    return -ctx.lr * g\n", "ok", {}, groups())
    assert len(open_fds() - fds) >= 6  # memfd, its two mappings' duplicates, go, done, error pipe, pidfd
    assert memfd_maps() == 2
    rule.close()
    rule.close()
    assert open_fds() - fds == set()
    assert memfd_maps() == 0
