"""AuON: Nesterov momentum divided by a cosh-based "brake" norm; linear time, no orthogonalization.

Paper: Maity, "A Survey For Linear-time Orthogonal Optimizer" (AuON), arXiv 2509.24320.
Follows the official code, ryyzn9/AuON `auon/optimizer.py` @9a62cc9: the update divides the
*unnormalised* momentum G by r and has no aspect factor (the zij doc's normalised-G variant with
sqrt(max(1, m/n)) is not this). LR 0.08, WD 0.01 and the Adam fallback (lr 0.008, betas (0.8, 0.95),
eps 1e-10, wd 0) are the official training config (`training/config.py`); the class default is
lr 0.24, wd 0. The fallback uses torch's AdamW form (AuON's own Adam puts eps outside the bias
correction, a difference of order eps).

Matrix roles (hidden_matrix, conv; elementwise, so no reshape is needed):
    B <- lerp(B, g, 1 - mu);  G = lerp(g, B, mu)                      (Nesterov)
    r = sqrt(mean(cosh(gamma G / (||G||_F + 1e-7))^2))
    p <- p (1 - lr wd) - lr G / (r + 1e-8)          (only the decay when G = 0)
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 0.08
MOMENTUM = 0.95
WD = 0.01
GAMMA = 1.5
ADAMW_LR = 0.008
ADAMW_BETA1 = 0.8
ADAMW_BETA2 = 0.95
ADAMW_EPS = 1e-10
ADAMW_WD = 0.0


def _is_matrix(ctx):
    return ctx.role in ("hidden_matrix", "conv") and len(ctx.shape) >= 2


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
    return {"momentum_buffer": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    buf = state["momentum_buffer"]
    buf.lerp_(g, 1 - MOMENTUM)
    G = g.lerp(buf, MOMENTUM)
    norm = G.norm()
    decay = p * (-ctx.lr * WD)
    if norm == 0:
        return decay
    r = torch.cosh(G * (GAMMA / (norm + 1e-7))).square().mean().sqrt()
    return decay.sub_(G / (r + 1e-8), alpha=ctx.lr)
