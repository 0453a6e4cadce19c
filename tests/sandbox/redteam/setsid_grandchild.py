"""Red team: a grandchild in its own session that keeps running after the job returns
(TOKEN, filled in by the test, marks it in the process table)."""
import torch

LR = 1e-3
TOKEN = "1000"


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import os

    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", TOKEN])
        os._exit(0)
    return torch.zeros_like(p)
