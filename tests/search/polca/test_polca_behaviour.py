"""The behaviour embedding on real rules: the bundled seeds run in-process (trusted) on fixed probe
gradients, as the platform's `rule_probe` runs them in the sandbox."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optforge import seeds
from optforge.rule import Ctx, Rule, load_rule
from optforge.search.polca.epsilon_net import ProbeError, behaviour_embedding, distance, epsilon_net
from optforge.search.polca.params import DEFAULT_EPSILON

EPSILON = DEFAULT_EPSILON["behaviour"]
PROBE = (("hidden_matrix", (6, 4)), ("embedding", (5, 3)), ("head", (3, 4)), ("vector", (5,)), ("scalar", ()))
TINY = 1e-8  # the gradient RMS of the optional extra probe tensor, where Adam's EPS matters
STEPS = 8


def probe_tensors(tiny: bool) -> list[tuple[str, str, tuple[int, ...], float]]:
    """(name, role, shape, gradient RMS) of each probe tensor."""
    out = [(role, role, shape, 1.0) for role, shape in PROBE]
    return out + [("vector_tiny", "vector", (5,), TINY)] if tiny else out


def probe_gradients(tiny: bool = False) -> dict[str, list[torch.Tensor]]:
    """A fixed gradient sequence per probe tensor, each gradient of the tensor's RMS."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, _, shape, rms in probe_tensors(tiny):
        grads = []
        for _ in range(STEPS):
            g = torch.randn(shape, generator=gen, dtype=torch.float64)
            grads.append(g * (rms / g.pow(2).mean().sqrt()))
        out[name] = grads
    return out


def probe(rule: Rule, lr: float = 1e-3, tiny: bool = False) -> np.ndarray:
    """The rule's updates on the probe (p += update each step), embedded."""
    gen = torch.Generator().manual_seed(1)
    grads = probe_gradients(tiny)
    updates = {}
    for name, role, shape, _ in probe_tensors(tiny):
        p = torch.randn(shape, generator=gen, dtype=torch.float64)
        state = rule.init(p, Ctx(lr=lr, t=1, T=STEPS, role=role, shape=shape))
        updates[name] = []
        for t, g in enumerate(grads[name], 1):
            u = rule.update(p, g, state, Ctx(lr=lr, t=t, T=STEPS, role=role, shape=shape))
            updates[name].append(u.clone())
            p = p + u
    return behaviour_embedding(updates, lr)


ADAMW_REFORMATTED = '''import math
import torch
LR=0.001
BETA_ONE=0.9;BETA_TWO=0.999
EPSILON=1e-08
DECAY=0.01
def init(param, ctx): return {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}
def update(param, grad, st, ctx):
    exp_avg = st["exp_avg"]; exp_avg_sq = st["exp_avg_sq"]
    exp_avg.lerp_(grad, 1-BETA_ONE)
    exp_avg_sq.mul_(BETA_TWO).addcmul_(grad, grad, value=1-BETA_TWO)
    denominator = (exp_avg_sq.sqrt()/math.sqrt(1-BETA_TWO**ctx.t)).add_(EPSILON)
    return (exp_avg/denominator).mul_(-ctx.lr/(1-BETA_ONE**ctx.t)).sub_(param, alpha=ctx.lr*DECAY)
'''

# the same rule with its arithmetic reordered: equal up to float rounding
ADAMW_REORDERED = '''import math
import torch
LR = 1e-3
BETA1, BETA2, EPS, WD = 0.9, 0.999, 1e-8, 0.01

def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}

def update(p, g, state, ctx):
    state["m"] = BETA1 * state["m"] + (1 - BETA1) * g
    state["v"] = BETA2 * state["v"] + (1 - BETA2) * g * g
    m_hat = state["m"] / (1 - BETA1 ** ctx.t)
    v_hat = state["v"] / (1 - BETA2 ** ctx.t)
    return -ctx.lr * (m_hat / (v_hat.sqrt() + EPS) + WD * p)
'''


def test_two_formattings_of_adamw_are_at_distance_zero():
    adamw = probe(seeds.load("adamw"))
    assert distance(adamw, probe(load_rule(ADAMW_REFORMATTED))) == 0.0
    assert distance(adamw, probe(load_rule(ADAMW_REORDERED))) < 1e-12


def test_adamw_and_lion_are_farther_apart_than_epsilon():
    d = distance(probe(seeds.load("adamw")), probe(seeds.load("lion")))
    assert d > EPSILON
    assert d > 0.1  # sign updates against Adam's normalised ones differ at the scale of the update itself


def test_constants_that_change_the_updates_move_the_point_and_lr_does_not():
    adamw = seeds.load("adamw")
    assert distance(probe(adamw), probe(adamw.with_hparams(WD=0.02))) > EPSILON
    assert distance(probe(adamw), probe(adamw.with_hparams(BETA1=0.95))) > EPSILON
    # the updates are in units of the step size the probe passed (LR is the tuned multiplier's business):
    # only the parameter's path differs, through the weight decay term (4e-5 here)
    tripled = adamw.with_hparams(LR=3e-3)
    assert distance(probe(adamw, lr=adamw.lr), probe(tripled, lr=tripled.lr)) < EPSILON / 10


def test_the_scale_is_relative_rms_of_the_updates():
    # SGD moves each element by lr * g with RMS(g) = 1: a rule 1.01x SGD is 1e-2 relative RMS away
    sgd = load_rule("LR = 1e-3\ndef init(p, ctx):\n    return {}\ndef update(p, g, state, ctx):\n    return -ctx.lr * g\n")
    scaled = load_rule(sgd.source.replace("-ctx.lr * g", "-1.01 * ctx.lr * g"))
    assert distance(probe(sgd), probe(scaled)) == pytest.approx(1e-2, rel=1e-9)
    assert np.linalg.norm(probe(sgd)) == pytest.approx(1.0, rel=1e-12)


def test_a_small_gradient_probe_tensor_makes_eps_visible():
    adamw = seeds.load("adamw")
    eps7 = adamw.with_hparams(EPS=1e-7)
    assert distance(probe(adamw), probe(eps7)) < EPSILON  # on unit-RMS gradients EPS changes nothing (1e-7)
    assert distance(probe(adamw, tiny=True), probe(eps7, tiny=True)) > EPSILON
    assert distance(probe(adamw, tiny=True), probe(load_rule(ADAMW_REFORMATTED), tiny=True)) == 0.0


def test_the_net_rejects_a_reformatted_copy_and_keeps_distinct_rules():
    adamw = seeds.load("adamw")
    seen = [("adamw", probe(adamw))]
    proposals = [("copy", probe(load_rule(ADAMW_REFORMATTED))), ("lion", probe(seeds.load("lion"))),
                 ("wd", probe(adamw.with_hparams(WD=0.02)))]
    net = epsilon_net(proposals, seen, EPSILON)
    assert sorted(d.key for d in net.accepted) == ["lion", "wd"]
    assert [(d.key, d.distance, d.nearest) for d in net.rejected] == [("copy", 0.0, "adamw")]


def test_a_rule_that_diverges_on_the_probe_has_no_point():
    with pytest.raises(ProbeError, match="tensor vector at step 2 is not finite"):
        behaviour_embedding({"vector": [[1.0, 2.0], [float("nan"), 0.0]]}, lr=1.0)
    with pytest.raises(ProbeError, match="lr"):
        behaviour_embedding({"vector": [[1.0]]}, lr=0.0)
    with pytest.raises(ProbeError, match="no probe updates"):
        behaviour_embedding({}, lr=1.0)
