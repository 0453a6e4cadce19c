"""AMSGrad: Adam with a running maximum of the second moment.

Paper: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
Follows torch.optim.Adam(amsgrad=True), not the paper: the maximum is taken over the raw v, and the
denominator is bias-corrected (the paper has no bias correction). Weight decay is coupled (L2; 0).

    g <- g + wd p
    m <- b1 m + (1 - b1) g
    v <- b2 v + (1 - b2) g^2
    vmax <- max(vmax, v)
    p <- p - (lr / (1 - b1^t)) * m / (sqrt(vmax) / sqrt(1 - b2^t) + eps)
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "vmax": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    m, v, vmax = state["m"], state["v"], state["vmax"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    torch.maximum(vmax, v, out=vmax)
    bc1 = 1 - BETA1 ** ctx.t
    bc2 = 1 - BETA2 ** ctx.t
    denom = (vmax.sqrt() / math.sqrt(bc2)).add_(EPS)
    return (m / denom).mul_(-ctx.lr / bc1)
