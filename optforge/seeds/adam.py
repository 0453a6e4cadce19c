"""Adam: adaptive moment estimation, with bias correction.

Paper: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (arXiv 1412.6980).
Follows torch.optim.Adam: eps is added after the bias-corrected square root, and the weight decay is
coupled (L2, added to the gradient; 0 by default).

    g <- g + wd p
    m <- b1 m + (1 - b1) g
    v <- b2 v + (1 - b2) g^2
    p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    bc1 = 1 - BETA1 ** ctx.t
    bc2 = 1 - BETA2 ** ctx.t
    denom = (v.sqrt() / math.sqrt(bc2)).add_(EPS)
    return (m / denom).mul_(-ctx.lr / bc1)
