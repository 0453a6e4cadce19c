"""SGD with Nesterov momentum, in torch's form.

Paper: Nesterov, "A method for solving the convex programming problem with convergence rate O(1/k^2)",
1983; Sutskever et al., ICML 2013 (momentum form); Bengio et al., arXiv 1212.0901 (the rewriting used here).
Follows torch.optim.SGD(nesterov=True): the buffer is g itself on the first step, and the look-ahead is
d = g + mu b. This equals Sutskever's form for a constant lr (it differs from Keras when lr changes).
Weight decay is coupled (L2).

    g <- g + wd p
    b <- g                                   (t = 1)
    b <- mu b + (1 - dampening) g            (t > 1)
    p <- p - lr (g + mu b)
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
    return g.add(b, alpha=MOMENTUM).mul_(-ctx.lr)
