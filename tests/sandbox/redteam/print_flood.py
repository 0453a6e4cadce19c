"""Red team: prints 100 MB."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    print("x" * (100 * 2**20))
    return torch.zeros_like(p)
