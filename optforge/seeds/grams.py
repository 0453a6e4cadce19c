"""Grams: Adam's update magnitude with the sign of the current gradient.

Paper: Cao, Li, Liu & Chen, "Grams: Gradient Descent with Adaptive Momentum Scaling", arXiv 2412.17107.
Follows pytorch_optimizer.Grams (eps = 1e-6, as there): the weight decay is decoupled and multiplied
by lr.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    u = (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)
    p <- p (1 - lr wd) - lr sign(g) |u|
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-6
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    bc1 = 1 - BETA1 ** ctx.t
    bc2 = 1 - BETA2 ** ctx.t
    denom = v.sqrt().div_(math.sqrt(bc2)).add_(EPS)
    u = m.div(bc1).div_(denom)
    delta = u.abs_().mul_(g.sign()).mul_(-ctx.lr)
    if WD != 0:
        delta.sub_(p, alpha=ctx.lr * WD)
    return delta
