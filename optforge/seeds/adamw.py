"""AdamW: Adam with decoupled weight decay.

Paper: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (arXiv 1711.05101).
Follows torch.optim.AdamW (the weight decay is multiplied by lr, as torch does).

    p <- p * (1 - lr * wd)
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
WD = 0.01


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    bc1 = 1 - BETA1 ** ctx.t
    bc2 = 1 - BETA2 ** ctx.t
    denom = (v.sqrt() / math.sqrt(bc2)).add_(EPS)
    return (m / denom).mul_(-ctx.lr / bc1).sub_(p, alpha=ctx.lr * WD)
