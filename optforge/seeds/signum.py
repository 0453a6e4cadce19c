"""Signum: sign of the momentum (signSGD with momentum).

Paper: Bernstein, Wang, Azizzadenesheli & Anandkumar, "signSGD: Compressed Optimisation for
Non-Convex Problems", ICML 2018 (arXiv 1802.04434).
Follows pytorch_optimizer.SignSGD(momentum=0.9): the momentum is an EMA (lerp), and the optional
weight decay is decoupled and multiplied by lr. LR is that library's default.

    p <- p (1 - lr wd)
    m <- b m + (1 - b) g
    p <- p - lr sign(m)
"""

import torch

LR = 1e-3
MOMENTUM = 0.9
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m = state["m"]
    m.lerp_(g, 1 - MOMENTUM)
    delta = torch.sign(m).mul_(-ctx.lr)
    if WD != 0:
        delta.sub_(p, alpha=ctx.lr * WD)
    return delta
