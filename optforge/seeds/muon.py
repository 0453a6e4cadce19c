"""Muon: momentum orthogonalized by Newton-Schulz, for hidden matrices; AdamW for the rest.

Paper: Jordan et al., "Muon: An optimizer for hidden layers in neural networks", blog post 2024
(kellerjordan.github.io/posts/muon); Liu et al., "Muon is Scalable for LLM Training", arXiv 2502.16982.
Follows torch.optim.Muon (torch 2.13, adjust_lr_fn="original") = KellerJordan/Muon `muon.py`
(MuonWithAuxAdam). LR 0.02 and WD 0 are KJ's defaults (torch's are 1e-3 and 0.1); the AdamW
fallback has KJ's aux-Adam defaults (lr 3e-4, betas (0.9, 0.95), eps 1e-10, wd 0). Newton-Schulz runs
in fp32 (float64 stays float64) instead of bf16: bf16 is slow and inexact on CPU.

Matrix roles (hidden_matrix; conv flattened to (out, -1)), W of shape (m, n):
    B <- lerp(B, g, 1 - mu)                       (momentum buffer)
    u = lerp(g, B, mu)   if NESTEROV   else B
    O = NS5(u)   X0 = u / (||u||_F + 1e-7), X <- aX + b(XX^T)X + c(XX^T)^2 X, (a,b,c) = NS_COEFFS
    p <- p (1 - lr wd) - lr sqrt(max(1, m / n)) O
Other roles (embedding, head, vector, scalar): AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 0.02
MOMENTUM = 0.95
NESTEROV = True
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
    return {"momentum_buffer": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    buf = state["momentum_buffer"]
    buf.lerp_(g, 1 - MOMENTUM)
    u = g.lerp(buf, MOMENTUM) if NESTEROV else buf
    o = _newton_schulz(u.reshape(u.size(0), -1))
    scale = math.sqrt(max(1.0, o.size(0) / o.size(1)))
    return o.reshape(p.shape).mul(-ctx.lr * scale).sub_(p, alpha=ctx.lr * WD)
