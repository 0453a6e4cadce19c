"""Red team: raises; the report must name this file's line 13."""
import torch

LR = 1e-3


def init(p, ctx):
    return {"m": torch.zeros_like(p)}


def update(p, g, state, ctx):
    scale = g.norm()
    raise ValueError("boom " + str(float(scale) > -1))
    return torch.zeros_like(p)
