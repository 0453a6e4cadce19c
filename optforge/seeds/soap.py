"""SOAP: Adam run in the eigenbasis of Shampoo's Kronecker factors, refreshed every few steps.

Paper: Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv 2409.11321.
Follows the official code, nikhilvyas/SOAP `soap.py`, as pytorch-optimizer 4.1.0 `SOAP` copies it
(defaults lr 3e-3, betas (0.95, 0.95), shampoo_beta = beta2, wd 0.01, precondition_frequency 10,
max_precond_dim 10000, eps 1e-8, merge_dims False). Step 1 only initialises the preconditioner (the
delta is zero) and the Adam step count lags by one. eigh and QR run in the parameter's dtype (float32
for lower precisions; the official code uses float32 throughout). Conv weights are preconditioned as
the flattened (out, -1) matrix (the official code keeps one factor per dimension). Non-matrix roles
use AdamW with SOAP's constants (the official code runs the same Adam with identity bases, with
eps/sqrt(bc2) and decay after the step: differences of order eps and lr^2).

Matrix roles, G of shape (m, n); k = t - 1 after the first call:
    L <- lerp(L, G G^T, 1 - beta_sh);  R <- lerp(R, G^T G, 1 - beta_sh)   (after the step; t = 1: init)
    t = 1: Q_L, Q_R = eigenvectors of L, R (descending);  delta = 0
    G~ = Q_L^T G Q_R;  M <- lerp(M, G, 1 - beta1);  V <- lerp(V, G~^2, 1 - beta2)  (V rotated)
    D = Q_L (Q_L^T M Q_R / (sqrt(V) + eps)) Q_R^T
    p <- p - lr sqrt(1 - beta2^k) / (1 - beta1^k) D;  then p <- p (1 - lr wd)
    every PRECONDITION_FREQUENCY k: Q <- QR(factor Q) with columns (and V) sorted by est. eigenvalue
Dimensions larger than MAX_PRECOND_DIM are left unrotated.
Other roles: AdamW with the ADAMW_* constants at lr * ADAMW_LR / LR.
"""

import math

import torch

LR = 3e-3
BETA1 = 0.95
BETA2 = 0.95
SHAMPOO_BETA = 0.95
EPS = 1e-8
WD = 0.01
PRECONDITION_FREQUENCY = 10
MAX_PRECOND_DIM = 10000
ADAMW_LR = 3e-3
ADAMW_BETA1 = 0.95
ADAMW_BETA2 = 0.95
ADAMW_EPS = 1e-8
ADAMW_WD = 0.01


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


def _wide(x):
    return x if x.dtype == torch.float64 else x.float()


def _factor(size, p):
    n = size if size <= MAX_PRECOND_DIM else 0
    return torch.zeros(n, n, dtype=p.dtype, device=p.device)


def init(p, ctx):
    if not _is_matrix(ctx):
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
    rows = p.shape[0]
    cols = p.numel() // rows
    return {
        "exp_avg": torch.zeros(rows, cols, dtype=p.dtype, device=p.device),
        "exp_avg_sq": torch.zeros(rows, cols, dtype=p.dtype, device=p.device),
        "GG_L": _factor(rows, p),
        "GG_R": _factor(cols, p),
        "Q_L": _factor(rows, p),
        "Q_R": _factor(cols, p),
        "calls": 0,
    }


def _accumulate(state, gm):
    if state["GG_L"].numel():
        state["GG_L"].lerp_(gm @ gm.T, 1 - SHAMPOO_BETA)
    if state["GG_R"].numel():
        state["GG_R"].lerp_(gm.T @ gm, 1 - SHAMPOO_BETA)


def _eigenbases(state):
    for gk, qk in (("GG_L", "Q_L"), ("GG_R", "Q_R")):
        gg = state[gk]
        if gg.numel():
            eye = torch.eye(gg.shape[0], dtype=gg.dtype, device=gg.device)
            q = torch.linalg.eigh(_wide(gg + 1e-30 * eye)).eigenvectors
            state[qk] = torch.flip(q, dims=[1]).to(gg.dtype)


def _refresh(state):
    """One power iteration + QR per factor; V's rows/columns follow the new eigenvalue order."""
    v = state["exp_avg_sq"]
    for dim, (gk, qk) in enumerate((("GG_L", "Q_L"), ("GG_R", "Q_R"))):
        gg, q = state[gk], state[qk]
        if not gg.numel():
            continue
        prod = gg @ q
        order = torch.argsort((q * prod).sum(0), descending=True)
        v = v.index_select(dim, order)
        state[qk] = torch.linalg.qr(_wide(prod.index_select(1, order))).Q.to(gg.dtype)
    state["exp_avg_sq"] = v


def _rotate(state, x, back):
    ql, qr = state["Q_L"], state["Q_R"]
    if ql.numel():
        x = ql @ x if back else ql.T @ x
    if qr.numel():
        x = x @ qr.T if back else x @ qr
    return x


def update(p, g, state, ctx):
    if not _is_matrix(ctx):
        return _adamw(p, g, state, ctx)
    m = state["exp_avg"]
    gm = g.reshape(m.shape)
    state["calls"] += 1
    if state["calls"] == 1:
        _accumulate(state, gm)
        _eigenbases(state)
        return torch.zeros_like(p)
    k = state["calls"] - 1
    g_rot = _rotate(state, gm, back=False)
    m.lerp_(gm, 1 - BETA1)
    v = state["exp_avg_sq"]
    v.lerp_(g_rot.square(), 1 - BETA2)
    d = _rotate(state, _rotate(state, m, back=False) / (v.sqrt() + EPS), back=True).reshape(p.shape)
    d = d.mul_(-ctx.lr * math.sqrt(1 - BETA2 ** k) / (1 - BETA1 ** k))
    d = d.sub_(p + d, alpha=ctx.lr * WD)
    _accumulate(state, gm)
    if k % PRECONDITION_FREQUENCY == 0:
        _refresh(state)
    return d
