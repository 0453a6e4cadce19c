"""Red team: forks without end (the static check stops the import; with it off the PID namespace,
RLIMIT_NPROC under a fresh uid and the wall clock must hold)."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import os

    while True:
        try:
            os.fork()
        except OSError:
            pass
    return torch.zeros_like(p)
