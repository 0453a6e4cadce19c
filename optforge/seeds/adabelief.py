"""AdaBelief: Adam whose second moment tracks the belief (g - m)^2 instead of g^2.

Paper: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
NeurIPS 2020 (arXiv 2010.07468).
Follows juntang-zhuang/Adabelief-Optimizer with rectify=False (pytorch_optimizer.AdaBelief's default;
adabelief-pytorch 0.2 defaults to rectify=True): eps is added into the state and again to the
denominator; the weight decay is decoupled (weight_decouple=True) and multiplied by lr.

    p <- p (1 - lr wd)
    m <- b1 m + (1 - b1) g
    s <- b2 s + (1 - b2) (g - m)^2 + eps
    p <- p - (lr / (1 - b1^t)) * m / (sqrt(s) / sqrt(1 - b2^t) + eps)
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-16
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "s": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m, s = state["m"], state["s"]
    m.lerp_(g, 1 - BETA1)
    r = g - m
    s.mul_(BETA2).addcmul_(r, r, value=1 - BETA2).add_(EPS)
    bc1 = 1 - BETA1 ** ctx.t
    bc2 = 1 - BETA2 ** ctx.t
    denom = s.sqrt().div_(math.sqrt(bc2)).add_(EPS)
    delta = m.div(denom).mul_(-ctx.lr / bc1)
    if WD != 0:
        delta.sub_(p, alpha=ctx.lr * WD)
    return delta
