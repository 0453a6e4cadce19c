"""Red team: writes a file into the parent's working directory (TARGET is filled in by the test)."""
import torch

LR = 1e-3
TARGET = ""


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    with open(TARGET, "w") as f:
        f.write("escaped")
    return torch.zeros_like(p)
