"""Red team: dereferences NULL through ctypes."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import ctypes

    ctypes.string_at(0)
    return torch.zeros_like(p)
