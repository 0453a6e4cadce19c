"""Lion: sign of an interpolated momentum, with decoupled weight decay.

Paper: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023 (arXiv 2302.06675).
Follows lion-pytorch 0.2.5 (= google/automl lion and pytorch-optimizer's Lion): the weight decay is
multiplied by lr (lion-pytorch's default, not its `decoupled_weight_decay=True` option). Use an lr
3-10x smaller and a wd 3-10x larger than for AdamW.

    c = b1 m + (1 - b1) g
    p <- p (1 - lr wd) - lr sign(c)
    m <- b2 m + (1 - b2) g
"""

import torch

LR = 1e-4
BETA1 = 0.9
BETA2 = 0.99
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m = state["m"]
    delta = torch.lerp(m, g, 1 - BETA1).sign_().mul_(-ctx.lr)
    if WD != 0:
        delta.sub_(p, alpha=ctx.lr * WD)
    m.lerp_(g, 1 - BETA2)
    return delta
