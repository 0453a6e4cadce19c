"""Conda: Adam run in the singular basis of its own momentum (column-normalized Adam).

Paper: "Conda: Column-Normalized Adam for Training Large Language Models Faster", arXiv 2509.24218.
Follows the authors' `CondaProjector` + `Conda` as implemented in pytorch-optimizer 4.1.0
(`Conda`, GaLore projector, projection_type 'std', full rank), with po's defaults (lr 1e-3, betas
(0.9, 0.999), update_proj_gap 2000, scale 1, eps 1e-8, wd 0). The basis is refreshed on the first
step and whenever t % UPDATE_PROJ_GAP == 0; the SVD runs in the parameter's dtype (po casts float64
to float32). Conv weights are projected as the flattened (out, -1) matrix (po leaves them unprojected).
Non-matrix roles use AdamW with Conda's constants (the official code runs the same Adam unprojected,
with eps/sqrt(bc2) and decay after the step: differences of order eps and lr^2).

Matrix roles, W of shape (m, n):
    M <- lerp(M, g, 1 - beta1)
    every K steps: Q = V^T (m >= n) or U (m < n) from svd(M, full_matrices=False)
    m >= n: g~ = g Q^T, M~ = M Q^T;  m < n: g~ = Q^T g, M~ = Q^T M
    v <- beta2 v + (1 - beta2) g~^2                                   (kept in the rotated basis)
    D = scale * back(M~ / (sqrt(v) + eps))       (back: X Q for m >= n, Q X for m < n)
    p <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) D;  then p <- p - lr wd p
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WD = 0.0
UPDATE_PROJ_GAP = 2000
SCALE = 1.0
ADAMW_LR = 1e-3
ADAMW_BETA1 = 0.9
ADAMW_BETA2 = 0.999
ADAMW_EPS = 1e-8
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
    rows = p.shape[0]
    cols = p.numel() // rows
    k = min(rows, cols)
    return {
        "exp_avg": torch.zeros(rows, cols, dtype=p.dtype, device=p.device),
        "exp_avg_sq": torch.zeros(rows, cols, dtype=p.dtype, device=p.device),
        "Q": torch.zeros(k, k, dtype=p.dtype, device=p.device),
        "q_step": 0,
    }


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    gm = g.reshape(m.shape)
    m.lerp_(gm, 1 - BETA1)
    right = m.size(0) >= m.size(1)
    if state["q_step"] == 0 or (ctx.t % UPDATE_PROJ_GAP == 0 and state["q_step"] != ctx.t):
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        state["Q"] = vh if right else u
        state["q_step"] = ctx.t
    q = state["Q"]
    g_rot = gm @ q.T if right else q.T @ gm
    m_rot = m @ q.T if right else q.T @ m
    v.mul_(BETA2).addcmul_(g_rot, g_rot, value=1 - BETA2)
    d = m_rot / (v.sqrt() + EPS)
    d = (d @ q if right else q @ d).mul_(SCALE).reshape(p.shape)
    step = ctx.lr * math.sqrt(1 - BETA2 ** ctx.t) / (1 - BETA1 ** ctx.t)
    d.mul_(-step)
    return d.sub_(p + d, alpha=ctx.lr * WD)
