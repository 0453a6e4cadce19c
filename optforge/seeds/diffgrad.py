"""diffGrad: Adam whose momentum is damped by a friction term from the gradient change.

Paper: Dubey et al., "diffGrad: An Optimization Method for Convolutional Neural Networks", IEEE TNNLS
2019 (arXiv 1909.11015).
Follows the original shivram1987/diffGrad: eps is not bias-scaled (step lr sqrt(1 - b2^t) / (1 - b1^t)
with denominator sqrt(v) + eps), g_prev = 0 on the first step, and the weight decay is coupled (L2;
0 by default). pytorch_optimizer.DiffGrad adds 1e-15 inside the square root (a 1e-13 difference).

    g <- g + wd p
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    xi = sigmoid(|g_prev - g|);  g_prev <- g
    p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * xi m / (sqrt(v) + eps)
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "g_prev": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    m, v, g_prev = state["m"], state["v"], state["g_prev"]
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    xi = (g_prev - g).abs_().sigmoid_()
    g_prev.copy_(g)
    step = ctx.lr * math.sqrt(1 - BETA2 ** ctx.t) / (1 - BETA1 ** ctx.t)
    denom = v.sqrt().add_(EPS)
    return xi.mul_(m).div_(denom).mul_(-step)
