"""Red team: ignores SIGTERM and spins."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        pass
    return torch.zeros_like(p)
