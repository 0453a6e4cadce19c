"""Red team (issue 15): structural pattern matching reads attributes, dunders included, that an
attribute-node checker never sees, and binds names it does not see: from a function's globals to the
builtins and `__import__`. The static check must refuse line 14 (the `match`)."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    match init:
        case object(__globals__={"__builtins__": {"__import__": imp}}):
            imp("os").system("echo escaped > escaped.txt")
        case object(__globals__={"__builtins__": object(__import__=imp)}):
            imp("os").system("echo escaped > escaped.txt")
    return torch.zeros_like(p)
