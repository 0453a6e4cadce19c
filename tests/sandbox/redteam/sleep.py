"""Red team: sleeps far past the limit through time.sleep."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import time

    time.sleep(600)
    return torch.zeros_like(p)
