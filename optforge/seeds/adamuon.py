"""AdaMuon: Muon followed by an elementwise Adam-style second moment of the orthogonalized update.

Paper: Si et al., "AdaMuon: Adaptive Muon Optimizer", arXiv 2507.11005.
Follows the official code, Chongjie-Si/AdaMuon `adamuon.py` @3b84e03 (defaults lr 0.02, wd 0.01,
momentum 0.95 Nesterov, beta2 0.999, eps 1e-8), not pytorch_optimizer.AdaMuon (other defaults: no
Nesterov, betas (0.9, 0.95), eps 1e-10). The AdamW fallback is what the official GPT-2 script gives
embeddings, head and vectors: torch AdamW at the same lr, betas (0.9, 0.95), eps 1e-8, wd = WD.
Newton-Schulz in fp32 (float64 stays float64), not bf16; conv weights are the flattened (out, -1)
matrix for the shape factors too.

Matrix roles, W of shape (m, n):
    B <- lerp(B, g, 1 - mu);  u = lerp(g, B, mu);  O = NS5(u)        (as Muon)
    v <- beta2 v + (1 - beta2) O * O                                  (elementwise, m x n)
    O' = O / (sqrt(v / (1 - beta2^t)) + eps);  O' <- O' sqrt(min(m, n)) / (||O'||_F + eps)
    p <- p (1 - lr wd) - lr 0.2 sqrt(max(m, n)) O'                    (update RMS 0.2)
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 0.02
MOMENTUM = 0.95
BETA2 = 0.999
EPS = 1e-8
WD = 0.01
NS_STEPS = 5
NS_COEFFS = (3.4445, -4.7750, 2.0315)
ADAMW_LR = 0.02
ADAMW_BETA1 = 0.9
ADAMW_BETA2 = 0.95
ADAMW_EPS = 1e-8
ADAMW_WD = 0.01


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
    flat = torch.zeros(p.shape[0], p.numel() // p.shape[0], dtype=p.dtype, device=p.device)
    return {"momentum_buffer": torch.zeros_like(p), "v_buffer": flat}


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    buf, v = state["momentum_buffer"], state["v_buffer"]
    buf.lerp_(g, 1 - MOMENTUM)
    u = g.lerp(buf, MOMENTUM)
    o = _newton_schulz(u.reshape(u.size(0), -1))
    v.mul_(BETA2).addcmul_(o, o, value=1 - BETA2)
    o = o / ((v / (1 - BETA2 ** ctx.t)).sqrt() + EPS)
    m, n = o.shape
    o = o * (math.sqrt(min(m, n)) / (o.norm() + EPS))
    return o.reshape(p.shape).mul(-ctx.lr * 0.2 * math.sqrt(max(m, n))).sub_(p, alpha=ctx.lr * WD)
