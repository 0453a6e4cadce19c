"""Schedule-Free AdamW: no lr schedule; train at an interpolation y, evaluate at the average x.

Paper: Defazio et al., "The Road Less Scheduled", NeurIPS 2024 (arXiv 2405.15682).
Follows the official facebookresearch schedulefree 1.4.1 `AdamWScheduleFree`: p holds y while
training; `eval_point` gives x = lerp(y, z, 1 - 1/b1), which RuleOptimizer.eval() swaps in (and
train() swaps back). The weight decay is taken at y; the averaging weights use the largest lr seen so
far (lr_max) and Python numbers kept in the state. WARMUP_STEPS is the library's own linear warmup.

    sched = min(1, t / warmup);  lr_t = lr sched;  lr_max <- max(lr_max, lr_t)
    w = t^r lr_max^power;  W <- W + w;  c = w / W  (0 if W = 0)
    v <- b2 v + (1 - b2) g^2            (g taken at y)
    h = g / (sqrt(v / (1 - b2^t)) + eps) + wd y
    y <- (1 - c) y + c z + lr_t (b1 (1 - c) - 1) h
    z <- z - lr_t h
    eval point: x = lerp(y, z, 1 - 1/b1)
"""

import torch

LR = 0.0025
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WD = 0.0
WARMUP_STEPS = 0
R = 0.0
WEIGHT_LR_POWER = 2.0


def init(p, ctx):
    return {"z": p.detach().clone(), "v": torch.zeros_like(p), "weight_sum": 0.0, "lr_max": -1.0}


def update(p, g, state, ctx):
    t = ctx.t
    sched = t / WARMUP_STEPS if t - 1 < WARMUP_STEPS else 1.0
    lr = ctx.lr * sched
    lr_max = max(lr, state["lr_max"])
    state["lr_max"] = lr_max
    weight = (t ** R) * (lr_max ** WEIGHT_LR_POWER)
    weight_sum = state["weight_sum"] + weight
    state["weight_sum"] = weight_sum
    c = weight / weight_sum if weight_sum != 0 else 0.0
    z, v = state["z"], state["v"]
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    denom = v.div(1 - BETA2 ** t).sqrt_().add_(EPS)
    h = g / denom
    if WD != 0:
        h.add_(p, alpha=WD)
    y = torch.lerp(p, z, c)
    y.add_(h, alpha=lr * (BETA1 * (1 - c) - 1))
    z.sub_(h, alpha=lr)
    return y.sub_(p)


def eval_point(p, state, ctx):
    return torch.lerp(p, state["z"], 1 - 1 / BETA1)
