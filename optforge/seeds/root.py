"""ROOT: Muon on the momentum clipped at its 90th-percentile magnitude, with Moonlight's RMS scaling.

Paper: He et al., "ROOT: Robust Orthogonalized Optimizer", arXiv 2511.20626.
Follows the official code, huawei-noah/noah-research `ROOT/examples/example_train.py` (defaults lr
1e-3, wd 0.1, momentum 0.95 undampened with Nesterov, 0.9 quantile; AdamW for non-matrix params,
embeddings and the head with betas (0.9, 0.95), eps 1e-8 and the same lr and wd). The official
shape-specific NS coefficients exist only for four LLM shapes (e.g. (2048, 2048) -> (3.4916, -4.8224,
2.1095)); every other shape uses Muon's, which is all this seed uses. Newton-Schulz in fp32 (float64
stays float64); conv flattened to (out, -1).

Matrix roles, W of shape (m, n):
    M <- mu M + g;  u = g + mu M                                      (undampened, Nesterov)
    eps_t = quantile_0.9(|u|) + 1e-9;  B = clamp(u, -eps_t, eps_t)    (= u - sign(u) relu(|u| - eps_t))
    X = NS5(B)
    p <- p (1 - lr wd) - lr 0.2 sqrt(max(m, n)) X
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 1e-3
MOMENTUM = 0.95
WD = 0.1
QUANTILE = 0.9
NS_STEPS = 5
NS_COEFFS = (3.4445, -4.7750, 2.0315)
ADAMW_LR = 1e-3
ADAMW_BETA1 = 0.9
ADAMW_BETA2 = 0.95
ADAMW_EPS = 1e-8
ADAMW_WD = 0.1


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


def _quantile(x, q):
    """Linear-interpolation quantile of a 1-D tensor (torch.quantile refuses more than 2**24 elements)."""
    pos = q * (x.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    low = x.kthvalue(lo + 1).values
    return low + (pos - lo) * (x.kthvalue(hi + 1).values - low)


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
    buf.mul_(MOMENTUM).add_(g)
    u = g.add(buf, alpha=MOMENTUM)
    a = u.abs().flatten()
    eps_t = (_quantile(a if a.dtype == torch.float64 else a.float(), QUANTILE) + 1e-9).to(u.dtype)
    b = torch.minimum(torch.maximum(u, -eps_t), eps_t)
    x = _newton_schulz(b.reshape(b.size(0), -1))
    m, n = x.shape
    return x.reshape(p.shape).mul(-ctx.lr * 0.2 * math.sqrt(max(m, n))).sub_(p, alpha=ctx.lr * WD)
