"""SWAN (paper-derived): stateless; row-standardize the gradient, then whiten it (polar factor via NS).

Paper: Ma et al., "SWAN: SGD with Normalization and Whitening Enables Stateless LLM Training",
ICML 2025 (arXiv 2412.13148).
No official code is released (the paper points to microsoft/msr_optim, which is not public), and
third-party ports disagree on Algorithm 3's GradNorm, so this is "SWAN (paper-derived)": Muon without
momentum, on row-standardized gradients. The whitening (G G^T)^(-1/2) G is approximated by the
Newton-Schulz quintic with Muon's coefficients (fp32; float64 stays float64), and the paper's optional
rescale keeps ||G~||_F, so the update RMS is 1 as Adam's and LR is Adam's 1e-3. Conv weights are the
flattened (out, -1) matrix. Non-matrix parameters use Adam (torch AdamW form, wd 0), as in the paper.

Matrix roles, G of shape (m, n) (m = fan-out):
    G~ = (G - mean_j G_ij) / (std_j G_ij + eps)                       (GradNorm, per row)
    W = NS5(G~)                                                       (GradWhitening ~ U V^T)
    p <- p - lr W ||G~||_F / (||W||_F + eps)
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 1e-3
EPS = 1e-8
NS_STEPS = 5
NS_COEFFS = (3.4445, -4.7750, 2.0315)
ADAMW_LR = 1e-3
ADAMW_BETA1 = 0.9
ADAMW_BETA2 = 0.999
ADAMW_EPS = 1e-8
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
    return {}


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    gm = g.reshape(g.size(0), -1)
    centered = gm - gm.mean(dim=1, keepdim=True)
    gn = centered / (centered.square().mean(dim=1, keepdim=True).sqrt() + EPS)
    w = _newton_schulz(gn)
    w = w * (gn.norm() / (w.norm() + EPS))
    return w.reshape(p.shape).mul(-ctx.lr)
