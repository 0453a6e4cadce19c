"""RAdam: Adam with a rectified (variance-corrected) adaptive learning rate.

Paper: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020 (arXiv 1908.03265).
Follows torch.optim.RAdam (radam_torch), not pytorch-optimizer's RAdam, which skips the update during
the warmup steps and tests rho_t >= 5: here the warmup steps are plain bias-corrected momentum steps.
Weight decay is coupled (L2; 0 by default).

    g <- g + wd p
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    if rho_t > 5:
        r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        p <- p - lr r (m / (1 - b1^t)) sqrt(1 - b2^t) / (sqrt(v) + eps)
    else:
        p <- p - lr m / (1 - b1^t)
"""

import torch

LR = 1e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    m, v = state["m"], state["v"]
    t = ctx.t
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    bc1 = 1 - BETA1 ** t
    bc2 = 1 - BETA2 ** t
    m_hat = m / bc1
    rho_inf = 2 / (1 - BETA2) - 1
    rho_t = rho_inf - 2 * t * (BETA2 ** t) / bc2
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive = (bc2 ** 0.5) / v.sqrt().add_(EPS)
        return -(m_hat * ctx.lr * adaptive * rect)
    return m_hat.mul_(-ctx.lr)
