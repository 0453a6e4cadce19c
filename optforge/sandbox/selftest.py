"""Trusted probe jobs for `optforge doctor`, the tests and the overhead benchmark.

`probe` reports, from inside the sandbox, what the layers actually achieve (it tries the network, a
write outside its directory, looks for secrets and for other processes); `digits_job` is a small real
training job (sklearn digits, a 64-128-10 MLP, a rule through RuleOptimizer) for timing.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

PROBE_SOURCE = "LR = 1e-3\n"
"""The candidate source handed to `probe`; it is never executed."""


def probe(source: str, payload: dict) -> dict[str, Any]:
    """What the job process can do here. Each field True means the isolation held."""
    facts: dict[str, Any] = {"uid": os.getuid(), "pid": os.getpid()}
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        s.connect(("127.0.0.1", int(payload.get("port", 9))))
        facts["network_blocked"] = False
    except OSError as e:
        facts["network_blocked"] = "unreachable" in str(e).lower() or getattr(e, "errno", 0) in (101, 99, 1, 13)
    finally:
        s.close()
    target = payload.get("write_probe")
    if target:
        try:
            with open(target, "w") as f:
                f.write("escaped")
            facts["write_blocked"] = False
        except OSError:
            facts["write_blocked"] = True
    markers = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
    facts["secrets_seen"] = sorted(k for k in os.environ if any(m in k.upper() for m in markers))
    try:
        facts["processes_visible"] = len([d for d in os.listdir("/proc") if d.isdigit()])
    except OSError:
        facts["processes_visible"] = -1
    facts["tmp_entries"] = len(os.listdir("/tmp")) if os.path.isdir("/tmp") else -1
    return facts


def _digits_problem(seed: int):
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    return x, y, model


def train_digits(source: str, steps: int = 300, seed: int = 0, batch: int = 64) -> dict[str, Any]:
    """Train the digits MLP with the rule in `source`; the job body, also called in-process by the benchmark."""
    import torch

    from optforge.rule import RuleOptimizer, load_rule, param_groups

    torch.set_num_threads(1)
    rule = load_rule(source, name="candidate")
    x, y, model = _digits_problem(seed)
    opt = RuleOptimizer(param_groups(model), rule, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    return {"final_loss": float(loss), "accuracy": acc, "train_s": time.perf_counter() - t0, "steps": steps}


def digits_job(source: str, payload: dict) -> dict[str, Any]:
    """Sandbox job form of `train_digits`."""
    return train_digits(source, int(payload.get("steps", 300)), int(payload.get("seed", 0)))
