"""CAME: confidence-guided Adafactor-style optimizer with factored momentum confidence.

Paper: Luo et al., "CAME: Confidence-guided Adaptive Memory Efficient Optimization", ACL 2023
(arXiv 2307.02047).
Follows the official came-pytorch 0.1.3 (yangluo7/CAME): no bias correction; >= 2-D tensors keep row
and column factors over their last two dims (ctx.shape), others keep full moments and skip the
confidence step; the weight decay is multiplied by lr. LR is pytorch-optimizer's default (the official
class has none).

    r = g^2 + eps1
    >= 2-D: R <- b2 R + (1 - b2) mean_cols(r); C <- b2 C + (1 - b2) mean_rows(r)
            u = g * rsqrt(R / mean(R)) rsqrt(C)
    else:   V <- b2 V + (1 - b2) r;  u = g * rsqrt(V)
    u <- u / max(1, RMS(u) / clip)
    m <- b1 m + (1 - b1) u
    >= 2-D: s = (u - m)^2 + eps2;  Rr <- b3 Rr + (1 - b3) mean_cols(s); Cr likewise
            update = m * rsqrt(Rr / mean(Rr)) rsqrt(Cr)
    else:   update = m
    p <- p - lr wd p - lr update
"""

import torch

LR = 2e-4
BETA1 = 0.9
BETA2 = 0.999
BETA3 = 0.9999
EPS1 = 1e-30
EPS2 = 1e-16
CLIP_THRESHOLD = 1.0
WD = 0.0


def init(p, ctx):
    shape = tuple(ctx.shape)
    state = {"m": torch.zeros_like(p)}
    if len(shape) >= 2:
        row, col = shape[:-1], shape[:-2] + shape[-1:]
        state["row"] = p.new_zeros(row)
        state["col"] = p.new_zeros(col)
        state["res_row"] = p.new_zeros(row)
        state["res_col"] = p.new_zeros(col)
    else:
        state["v"] = torch.zeros_like(p)
    return state


def _rms(x):
    return x.norm(2) / (x.numel() ** 0.5)


def _approx_rsqrt(row, col):
    r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
    c_factor = col.unsqueeze(-2).rsqrt()
    return torch.mul(r_factor, c_factor)


def update(p, g, state, ctx):
    factored = len(ctx.shape) >= 2
    sq = g * g + EPS1
    if factored:
        row, col = state["row"], state["col"]
        row.mul_(BETA2).add_(sq.mean(dim=-1), alpha=1 - BETA2)
        col.mul_(BETA2).add_(sq.mean(dim=-2), alpha=1 - BETA2)
        u = _approx_rsqrt(row, col).mul_(g)
    else:
        v = state["v"]
        v.mul_(BETA2).add_(sq, alpha=1 - BETA2)
        u = v.rsqrt().mul_(g)
    u.div_((_rms(u) / CLIP_THRESHOLD).clamp_(min=1.0))
    m = state["m"]
    m.mul_(BETA1).add_(u, alpha=1 - BETA1)
    if factored:
        res = (u - m) ** 2 + EPS2
        res_row, res_col = state["res_row"], state["res_col"]
        res_row.mul_(BETA3).add_(res.mean(dim=-1), alpha=1 - BETA3)
        res_col.mul_(BETA3).add_(res.mean(dim=-2), alpha=1 - BETA3)
        step = _approx_rsqrt(res_row, res_col).mul_(m)
    else:
        step = m.clone()
    delta = step.mul_(-ctx.lr)
    if WD != 0:
        delta.sub_(p, alpha=WD * ctx.lr)
    return delta
