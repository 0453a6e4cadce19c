"""Adafactor: factored second moments, relative step size, update clipping; no momentum.

Paper: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018
(arXiv 1804.04235).
Follows torch.optim.Adafactor, which differs from the paper and from HF/pytorch-optimizer code: no beta1
momentum, no relative-step mode (lr caps rho_t), and eps1 = machine eps of the parameter dtype unless
EPS1 is set. Tensors with >= 2 dims keep row and column factors over their last two dims (ctx.shape);
others keep a full second moment. DECAY_RATE is torch's `beta2_decay`, D its clipping threshold `d`.

    rho_t = min(lr, 1 / sqrt(t));  alpha = max(eps2, RMS(p)) rho_t;  beta2_t = 1 - t^DECAY_RATE
    p <- p (1 - lr wd)
    >= 2-D: R <- lerp(R, mean_cols(g^2), 1 - beta2_t); C <- lerp(C, mean_rows(g^2), 1 - beta2_t)
            V = R C / mean(R)
    else:   V <- lerp(V, g^2, 1 - beta2_t)
    u = g / sqrt(max(V, eps1^2));  u <- u / max(1, RMS(u) / D)
    p <- p - alpha u
"""

import math

import torch

LR = 1e-2
DECAY_RATE = -0.8
EPS1 = None  # None: machine eps of the parameter's dtype (torch's default)
EPS2 = 1e-3
D = 1.0
WD = 0.0


def init(p, ctx):
    if len(ctx.shape) >= 2:
        row = list(ctx.shape)
        row[-1] = 1
        col = list(ctx.shape)
        col[-2] = 1
        return {"row": p.new_zeros(row), "col": p.new_zeros(col)}
    return {"v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    eps1 = torch.finfo(p.dtype).eps if EPS1 is None else EPS1
    t = float(ctx.t)
    one_minus_beta2 = t ** DECAY_RATE
    rho = min(ctx.lr, 1 / (t ** 0.5))
    alpha = max(EPS2, p.norm(2).item() / math.sqrt(p.numel())) * rho
    if len(ctx.shape) >= 2:
        row, col = state["row"], state["col"]
        row.lerp_(torch.norm(g, dim=-1, keepdim=True).square_().div_(g.size(-1)), one_minus_beta2)
        col.lerp_(torch.norm(g, dim=-2, keepdim=True).square_().div_(g.size(-2)), one_minus_beta2)
        var = row @ col
        var.div_(row.mean(dim=-2, keepdim=True).clamp_(min=eps1))
    else:
        v = state["v"]
        v.lerp_(g * g, one_minus_beta2)
        var = v.clone()
    u = var.clamp_(min=eps1 * eps1).rsqrt_().mul_(g)
    denom = max(1.0, u.norm(2).item() / (math.sqrt(u.numel()) * D))
    delta = u.mul_(-alpha / denom)
    if WD != 0:
        delta.sub_(p, alpha=ctx.lr * WD)
    return delta
