"""RMSprop: divide the gradient by a running RMS of recent gradients.

Paper: Tieleman & Hinton, COURSERA "Neural Networks for Machine Learning", lecture 6.5, 2012.
Follows torch.optim.RMSprop: alpha = 0.99 and eps outside the square root (TensorFlow/Keras use
rho = 0.9 and eps inside). CENTERED subtracts the squared mean gradient; MOMENTUM > 0 adds torch's
momentum buffer. Weight decay is coupled (L2; 0 by default).

    g <- g + wd p
    v <- alpha v + (1 - alpha) g^2
    a = sqrt(v) + eps                 (centered: gbar <- lerp(gbar, g, 1 - alpha); a = sqrt(v - gbar^2) + eps)
    p <- p - lr g / a                 (momentum: b <- mu b + g / a; p <- p - lr b)
"""

import torch

LR = 1e-2
ALPHA = 0.99
EPS = 1e-8
MOMENTUM = 0.0
CENTERED = False
WD = 0.0


def init(p, ctx):
    state = {"v": torch.zeros_like(p)}
    if MOMENTUM > 0:
        state["b"] = torch.zeros_like(p)
    if CENTERED:
        state["gbar"] = torch.zeros_like(p)
    return state


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    v = state["v"]
    v.mul_(ALPHA).addcmul_(g, g, value=1 - ALPHA)
    if CENTERED:
        gbar = state["gbar"]
        gbar.lerp_(g, 1 - ALPHA)
        avg = v.addcmul(gbar, gbar, value=-1).sqrt_()
    else:
        avg = v.sqrt()
    avg.add_(EPS)
    if MOMENTUM > 0:
        b = state["b"]
        b.mul_(MOMENTUM).addcdiv_(g, avg)
        return b.mul(-ctx.lr)
    return g.div(avg).mul_(-ctx.lr)
