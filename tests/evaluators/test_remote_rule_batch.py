"""One round trip serves every tensor of a step: what the rule process returns is read after its last
update of the step, as RuleOptimizer applies in-process deltas after the last update."""

from __future__ import annotations

import torch

from optforge.evaluators.remote_rule import RemoteRuleSource
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.train import train_rule
from optforge.rule import load_rule

MIX = {t.name: t for t in get_suite("smoke").tasks}["smoke_mix"]  # two (8,) biases share a buffer below

# returns one buffer per shape, rewritten by every tensor of that shape: in-process, each such tensor
# gets the last one's delta (the deltas are applied after the last update); the split path must agree
SHARED_BUFFER = '''
import torch
LR = 1e-2
_BUF = {}

def init(p, ctx):
    return {}

def update(p, g, state, ctx):
    buf = _BUF.setdefault(tuple(p.shape), torch.zeros_like(p))
    buf.copy_(-ctx.lr * g)
    return buf
'''


def test_a_buffer_returned_for_two_tensors_gives_the_in_process_curve(host):
    kw = dict(lr=1e-2, seed=0, steps=6, eval_steps=[0, 6])
    today = train_rule(MIX, load_rule(SHARED_BUFFER, name="shared"), **kw)
    split = train_rule(MIX, RemoteRuleSource(host, SHARED_BUFFER, "shared"), **kw)
    assert split.train_loss == today.train_loss
    assert all(torch.equal(today.snapshots[6][n], split.snapshots[6][n]) for n in today.snapshots[6])
