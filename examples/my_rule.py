"""An example rule: AdamW's direction, but the update is the sign of an interpolated momentum
(Lion-style) scaled by the per-tensor RMS of the Adam step, so its size adapts like Adam's.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    u = m_hat / (sqrt(v_hat) + eps)
    p <- p - lr * sign(b1 m + (1 - b1) g) * rms(u)
"""

import math

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.99
EPS = 1e-8


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    m, v = state["m"], state["v"]
    direction = torch.sign(m * BETA1 + g * (1 - BETA1))
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    u = (m / (1 - BETA1**ctx.t)) / ((v / (1 - BETA2**ctx.t)).sqrt() + EPS)
    rms = u.pow(2).mean().sqrt()
    return direction * (-ctx.lr * float(rms))
