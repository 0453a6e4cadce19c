"""MARS-AdamW (approx): AdamW on a variance-reduced, norm-clipped gradient; AdamW for non-2-D tensors.

Paper: Yuan et al., "MARS: Unleashing the Power of Variance Reduction for Training Large Models",
ICML 2025 (arXiv 2411.10438).
Follows the official AGI-Arena/MARS `optimizers/mars.py` (mars_type="mars-adamw", is_approx=True,
optimize_1d=False): the correction uses last step's gradient (g_prev = 0 on the first step), the clip
is on the tensor's Frobenius norm, and only tensors with exactly 2 dims use MARS (pytorch-optimizer
tests ndim >= 2 and places eps differently). Every other tensor gets AdamW with its own betas and
weight decay, at lr * LR_1D / LR (the official lr_1d factor).

2-D:
    c = g + gamma (b1 / (1 - b1)) (g - g_prev);  if ||c|| > 1: c <- c / ||c||
    m <- b1 m + (1 - b1) c;  v <- b2 v + (1 - b2) c^2
    p <- p - lr (wd p + m / ((sqrt(v) / sqrt(1 - b2^t) + eps) (1 - b1^t)))
other shapes (betas_1d, wd_1d, lr_1d = lr LR_1D / LR):
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr_1d (wd_1d p + m / ((sqrt(v) / sqrt(1 - b2^t) + eps) (1 - b1^t)))
"""

import math

import torch

LR = 3e-3
BETA1 = 0.95
BETA2 = 0.99
EPS = 1e-8
WD = 0.0
GAMMA = 0.025
LR_1D = 3e-3
BETA1_1D = 0.9
BETA2_1D = 0.95
WD_1D = 0.1


def init(p, ctx):
    state = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
    if len(ctx.shape) == 2:
        state["g_prev"] = torch.zeros_like(p)
    return state


def _adam_delta(p, c, m, v, lr, b1, b2, wd, t):
    m.mul_(b1).add_(c, alpha=1 - b1)
    v.mul_(b2).addcmul_(c, c, value=1 - b2)
    denom = v.sqrt().mul_(1 / math.sqrt(1 - b2 ** t)).add_(EPS).mul_(1 - b1 ** t)
    return torch.mul(p, wd).add_(m.div(denom)).mul_(-lr)


def update(p, g, state, ctx):
    m, v = state["m"], state["v"]
    if len(ctx.shape) != 2:
        return _adam_delta(p, g, m, v, ctx.lr * (LR_1D / LR), BETA1_1D, BETA2_1D, WD_1D, ctx.t)
    g_prev = state["g_prev"]
    c = (g - g_prev).mul_(GAMMA * (BETA1 / (1 - BETA1))).add_(g)
    norm = torch.norm(c)
    if norm > 1:
        c = c / norm
    g_prev.copy_(g)
    return _adam_delta(p, c, m, v, ctx.lr, BETA1, BETA2, WD, ctx.t)
