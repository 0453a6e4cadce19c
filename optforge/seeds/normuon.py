"""NorMuon: Muon with a per-neuron (row-wise) second moment that evens out the update's rows.

Paper: Li et al., "NorMuon: Making Muon more efficient and scalable", arXiv 2510.05491.
Follows the official code, zichongli5/NorMuon @c6989a8 (`normuon_update`, NorMuonWithAuxAdam), not
Algorithm 1 of the paper (which rescales to RMS 0.2 instead of preserving the norm; po's
update_scale='match_rms'). AdamW fallback: the official aux Adam (lr 3e-4, betas (0.9, 0.95),
eps 1e-10, wd 0). Newton-Schulz in fp32 (float64 stays float64), not bf16; conv weights are treated
as the flattened (out, -1) matrix throughout (the official code takes row means of the 4-D tensor).

Matrix roles, W of shape (m, n):
    B <- lerp(B, g, 1 - mu);  u = lerp(g, B, mu);  O = NS5(u)        (as Muon)
    v <- lerp(v, mean_j O_ij^2, 1 - beta2)                          (v: m x 1, no bias correction)
    O' = O / (sqrt(v) + eps);  O' <- O' ||O||_F / (||O'||_F + eps)
    p <- p (1 - lr wd) - lr sqrt(max(1, m / n)) O'
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 0.02
MOMENTUM = 0.95
BETA2 = 0.95
EPS = 1e-10
WD = 0.0
NS_STEPS = 5
NS_COEFFS = (3.4445, -4.7750, 2.0315)
ADAMW_LR = 3e-4
ADAMW_BETA1 = 0.9
ADAMW_BETA2 = 0.95
ADAMW_EPS = 1e-10
ADAMW_WD = 0.0


def _is_matrix(ctx):
    return ctx.role in ("hidden_matrix", "conv") and len(ctx.shape) >= 2


def _newton_schulz(u):
    """Quintic Newton-Schulz towards the polar factor; fp32 on CPU, float64 kept for exact tests."""
    a, b, c = NS_COEFFS
    x = u if u.dtype == torch.float64 else u.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + 1e-7)
    for _ in range(NS_STEPS):
        s = x @ x.T
        x = a * x + (b * s + c * (s @ s)) @ x
    if tall:
        x = x.T
    return x.to(u.dtype)


def _adamw(p, g, state, ctx):
    """AdamW (torch.optim.AdamW form) for the roles the official code gives to its Adam."""
    lr = ctx.lr * ADAMW_LR / LR
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - ADAMW_BETA1)
    v.mul_(ADAMW_BETA2).addcmul_(g, g, value=1 - ADAMW_BETA2)
    denom = (v.sqrt() / math.sqrt(1 - ADAMW_BETA2 ** ctx.t)).add_(ADAMW_EPS)
    return (m / denom).mul_(-lr / (1 - ADAMW_BETA1 ** ctx.t)).sub_(p, alpha=lr * ADAMW_WD)


def init(p, ctx):
    if not _is_matrix(ctx):
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
    return {
        "momentum_buffer": torch.zeros_like(p),
        "second_momentum_buffer": torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device),
    }


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    buf, v = state["momentum_buffer"], state["second_momentum_buffer"]
    buf.lerp_(g, 1 - MOMENTUM)
    u = g.lerp(buf, MOMENTUM)
    o = _newton_schulz(u.reshape(u.size(0), -1))
    norm = o.norm()
    v.lerp_(o.square().mean(dim=1, keepdim=True), 1 - BETA2)
    o = o / (v.sqrt() + EPS)
    o = o * (norm / (o.norm() + EPS))
    scale = math.sqrt(max(1.0, o.size(0) / o.size(1)))
    return o.reshape(p.shape).mul(-ctx.lr * scale).sub_(p, alpha=ctx.lr * WD)
