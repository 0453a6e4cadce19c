"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule.

Paper: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.
Follows torch.optim.NAdam (not Keras's "simplified" NAdam): mu_t = b1 (1 - 0.5 * 0.96^(t psi)), and
the running product of the mu_t is kept in the state. Weight decay is coupled (L2; 0 by default).

    g <- g + wd p
    mu_t = b1 (1 - 0.5 * 0.96^(t psi)),  mu_{t+1} likewise,  P_t = mu_1 ... mu_t
    m <- b1 m + (1 - b1) g
    v <- b2 v + (1 - b2) g^2
    d = sqrt(v / (1 - b2^t)) + eps
    p <- p - lr (1 - mu_t) / (1 - P_t) * g / d - lr mu_{t+1} / (1 - P_t mu_{t+1}) * m / d
"""

import torch

LR = 2e-3
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
MOMENTUM_DECAY = 4e-3
WD = 0.0


def init(p, ctx):
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "mu_product": 1.0}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    m, v = state["m"], state["v"]
    t = ctx.t
    bc2 = 1 - BETA2 ** t
    mu = BETA1 * (1.0 - 0.5 * 0.96 ** (t * MOMENTUM_DECAY))
    mu_next = BETA1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * MOMENTUM_DECAY))
    mu_product = state["mu_product"] * mu
    state["mu_product"] = mu_product
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    denom = v.div(bc2).sqrt_().add_(EPS)
    delta = g.div(denom).mul_(-ctx.lr * (1.0 - mu) / (1.0 - mu_product))
    return delta.addcdiv_(m, denom, value=-ctx.lr * mu_next / (1.0 - mu_product * mu_next))
