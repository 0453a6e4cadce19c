"""ATTACK (failed on main; fixed on branch `attack`): a rule that clears its parent-death signal
(`prctl(PR_SET_PDEATHSIG, 0)`) and loops survives the probe watchdog, which SIGKILLed only its
PID-namespace parent and relied on that signal. `_WatchedHost.done()` then found it still running 5 s
later and raised, the whole probe job failed, and every source of the batch was probed again alone (one
source cost the batch N + 1 jobs, against "a rule process that runs past timeout_s is killed, and only
that source fails"). Checker off, the sources given to the probe job as `rule_probes` does."""

from __future__ import annotations

from optforge import sandbox, seeds
from optforge.search.probe import JOB

HANG = '''
import torch
LR = 1e-3

def init(p, ctx):
    import ctypes
    ctypes.CDLL(None).prctl(1, 0)  # PR_SET_PDEATHSIG: none
    while True:
        pass

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_a_rule_that_clears_its_death_signal_fails_alone():
    limits = sandbox.Limits(timeout_s=90.0, static_check=False)
    res = sandbox.run("", JOB, {"sources": [HANG, seeds.source("lion")], "timeout_s": 5.0}, sandbox.RULE_POLICY, limits)
    assert res.ok, (res.reason, res.exception)
    hang, lion = res.value["results"]
    assert "ran past its 5 s" in hang.get("failure", ""), hang
    assert lion == {}, lion
