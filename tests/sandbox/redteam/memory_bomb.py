"""Red team: allocates (and touches) tensors until something gives."""
import torch

LR = 1e-3


def init(p, ctx):
    return {"hoard": []}


def update(p, g, state, ctx):
    while True:
        state["hoard"].append(torch.ones(2**24))
    return torch.zeros_like(p)
