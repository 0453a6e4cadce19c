"""Adagrad: per-coordinate learning rates from the sum of squared gradients.

Paper: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
Optimization", JMLR 2011.
Follows torch.optim.Adagrad: eps = 1e-10 outside the square root, the accumulator starts at
INITIAL_ACCUMULATOR_VALUE = 0 (TensorFlow uses 0.1), and DECAY_RATE is torch's `lr_decay`.
Weight decay is coupled (L2; 0 by default).

    g <- g + wd p
    s <- s + g^2
    p <- p - lr / (1 + (t - 1) decay) * g / (sqrt(s) + eps)
"""

import torch

LR = 1e-2
DECAY_RATE = 0.0
INITIAL_ACCUMULATOR_VALUE = 0.0
EPS = 1e-10
WD = 0.0


def init(p, ctx):
    return {"s": torch.full_like(p, INITIAL_ACCUMULATOR_VALUE)}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    s = state["s"]
    clr = ctx.lr / (1 + (ctx.t - 1) * DECAY_RATE)
    s.addcmul_(g, g, value=1)
    std = s.sqrt().add_(EPS)
    return g.div(std).mul_(-clr)
