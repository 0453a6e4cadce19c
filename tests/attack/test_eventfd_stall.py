"""ATTACK (failed on main; fixed on branch `attack`): a rule process fills the `go` eventfd it shares with the trainer to its maximum
(2**64 - 2) and exits. The trainer's next `eventfd_write(go, 1)` (its STOP in `RemoteRule.close`)
blocks forever: it is a plain blocking write, not polled with the rule process's pidfd, and nobody
reads `go` any more. In a `rule_probes` batch the source's own probe timeout does not help (its rule
process is already dead): the whole job stalls to the job's wall limit, so one source costs the batch
and every source is then probed again alone. Checker off, as tests/evaluators/test_remote_rule_memfd.py
(`torch.os` through `load_rule(policy=None)`)."""

from __future__ import annotations

import threading

import pytest

from optforge.evaluators.remote_rule import RemoteRuleSource, RuleProcessError
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.train import train_rule
from optforge.sandbox.rule_host import RuleHost

QUAD = {t.name: t for t in get_suite("smoke").tasks}["smoke_quad"]

STALLER = '''
import torch
LR = 1e-3

def init(p, ctx):
    os = torch.os
    for f in os.listdir("/proc/self/fd"):
        try:
            kind = os.readlink("/proc/self/fd/" + f)
            if kind == "anon_inode:[eventfd]":
                os.eventfd_write(int(f), 2 ** 64 - 2)
            elif kind.startswith("pipe:"):  # after the fix: fill whatever pipe end it may write
                os.set_blocking(int(f), False)
                while True:
                    os.write(int(f), b"x" * 4096)
        except OSError:
            pass
    os._exit(0)

def update(p, g, state, ctx):
    return -ctx.lr * g
'''


def test_a_rule_that_fills_go_cannot_stall_the_trainer():
    host = RuleHost.start()
    outcome = []

    def run():
        try:
            train_rule(QUAD, RemoteRuleSource(host, STALLER), lr=1e-3, seed=0, steps=2)
            outcome.append("ok")
        except RuleProcessError as e:
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)  # daemon: when it hangs, the test process still ends
    t.start()
    t.join(20.0)
    try:
        assert not t.is_alive(), "the trainer is still blocked 20 s after its rule process exited"
        # it died; the trainer may have taken the bytes it left on "done" for a step or two of replies
        # (zero deltas: nothing it could not have returned itself) before it found out, but it never blocks
        assert outcome and (outcome[0] == "ok" or isinstance(outcome[0], RuleProcessError)), outcome
    finally:
        if not t.is_alive():
            host.close()
