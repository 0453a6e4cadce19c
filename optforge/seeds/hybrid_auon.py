"""Hybrid-AuON: AuON's cosh-brake step on a direction first sharpened by one Newton-Schulz iteration.

Paper: Maity, "A Survey For Linear-time Orthogonal Optimizer" (AuON, Hybrid-AuON), arXiv 2509.24320.
Paper-derived: ryyzn9/AuON's training script builds `HybridAuON(..., ns_steps=5)`, but the class is
not in the released `auon/optimizer.py` @9a62cc9, so this follows the paper's description (AuON plus
one NS iteration, NS_STEPS = 1). The update keeps AuON's Frobenius norm ||G||_F / (r + 1e-8) and takes
its direction from the NS output. Constants and the Adam fallback as in the `auon` seed (official
training config: lr 0.08, wd 0.01; Adam lr 0.008, betas (0.8, 0.95), eps 1e-10, wd 0; torch AdamW form).
Newton-Schulz in fp32 (float64 stays float64), Muon's coefficients; conv flattened to (out, -1).

Matrix roles:
    B <- lerp(B, g, 1 - mu);  G = lerp(g, B, mu)                      (Nesterov, as AuON)
    Y = NS_k(G),  k = NS_STEPS   (X0 = G / (||G||_F + 1e-7), X <- aX + b(XX^T)X + c(XX^T)^2 X)
    Y' = Y / (||Y||_F + 1e-7);  r = sqrt(mean(cosh(gamma Y')^2))
    p <- p (1 - lr wd) - lr ||G||_F Y' / (r + 1e-8)     (only the decay when G = 0)
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 0.08
MOMENTUM = 0.95
WD = 0.01
GAMMA = 1.5
NS_STEPS = 1
NS_COEFFS = (3.4445, -4.7750, 2.0315)
ADAMW_LR = 0.008
ADAMW_BETA1 = 0.8
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
    y = _newton_schulz(G.reshape(G.size(0), -1)).reshape(p.shape)
    y = y / (y.norm() + 1e-7)
    r = torch.cosh(GAMMA * y).square().mean().sqrt()
    return decay.sub_(y * (norm / (r + 1e-8)), alpha=ctx.lr)
