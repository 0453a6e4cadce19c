"""Adan: adaptive Nesterov momentum from gradient differences, with proximal weight decay.

Paper: Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models",
TPAMI 2024 (arXiv 2208.06677).
Follows the official sail-sg/Adan in its default (prox) form, which pytorch_optimizer.Adan matches.
The betas weight the *old* value (the paper's beta is 1 - these). On the first step g_prev = g, so
the gradient difference is 0.

    D = g - g_prev
    m <- b1 m + (1 - b1) g
    d <- b2 d + (1 - b2) D
    n <- b3 n + (1 - b3) (g + b2 D)^2
    u = (m / (1 - b1^t) + b2 d / (1 - b2^t)) / (sqrt(n) / sqrt(1 - b3^t) + eps)
    p <- (p - lr u) / (1 + lr wd)
"""

import math

import torch

LR = 1e-3
BETA1 = 0.98
BETA2 = 0.92
BETA3 = 0.99
EPS = 1e-8
WD = 0.0


def init(p, ctx):
    return {
        "m": torch.zeros_like(p),
        "d": torch.zeros_like(p),
        "n": torch.zeros_like(p),
        "g_prev": torch.zeros_like(p),
    }


def update(p, g, state, ctx):
    m, d, n, g_prev = state["m"], state["d"], state["n"], state["g_prev"]
    t = ctx.t
    diff = g - g_prev if t > 1 else torch.zeros_like(g)
    m.lerp_(g, 1 - BETA1)
    d.lerp_(diff, 1 - BETA2)
    mix = diff.mul_(BETA2).add_(g)
    n.mul_(BETA3).addcmul_(mix, mix, value=1 - BETA3)
    g_prev.copy_(g)
    denom = n.sqrt().div_(math.sqrt(1 - BETA3 ** t)).add_(EPS)
    step = m.div(denom).mul_(ctx.lr / (1 - BETA1 ** t))
    step.addcdiv_(d, denom, value=ctx.lr * BETA2 / (1 - BETA2 ** t))
    if WD != 0:
        # p_new = (p - step) / (1 + lr wd), returned as a delta
        return (p - step).div_(1 + ctx.lr * WD).sub_(p)
    return step.neg_()
