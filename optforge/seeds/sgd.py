"""SGD with heavy-ball momentum.

Paper: Polyak, "Some methods of speeding up the convergence of iteration methods", USSR Comp. Math. 1964;
Sutskever et al., "On the importance of initialization and momentum in deep learning", ICML 2013.
Follows torch.optim.SGD(nesterov=False): the buffer is g itself on the first step (no zero init), and
the weight decay is coupled (L2, added to the gradient). MOMENTUM 0.9 and LR 1e-2 (torch's defaults are
0 and 1e-3) so that the seed is a useful baseline.

    g <- g + wd p
    b <- g                                   (t = 1)
    b <- mu b + (1 - dampening) g            (t > 1)
    p <- p - lr b
"""

import torch

LR = 1e-2
MOMENTUM = 0.9
DAMPENING = 0.0
WD = 0.0


def init(p, ctx):
    return {"b": torch.zeros_like(p)}


def update(p, g, state, ctx):
    if WD != 0:
        g = g.add(p, alpha=WD)
    b = state["b"]
    if ctx.t == 1:
        b.copy_(g)
    else:
        b.mul_(MOMENTUM).add_(g, alpha=1 - DAMPENING)
    return b.mul(-ctx.lr)
