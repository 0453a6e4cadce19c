"""Red team: never returns (allowed by the static check: only the wall clock can stop it)."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    n = 0
    while True:
        n += 1
    return torch.zeros_like(p)
