"""Sandbox overhead: the same job (train a digits MLP 64-128-10 for 300 steps with the AdamW seed)
run in-process, through the warm worker and through a cold spawn, side by side.

Run: python benchmarks/sandbox_overhead.py [--reps 5] [--steps 300]
Targets (issue 4): warm worker start < 100 ms per job; total overhead < 5 % of a 5-second job.
Rounds alternate the three modes so machine noise hits each alike; medians are printed. On a busy
machine wall times are noisy: compare the job CPU seconds column too (the worker's own CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sklearn.datasets import load_digits

from optforge import seeds
from optforge.rule import RuleOptimizer, load_rule, param_groups

_DIGITS = load_digits()  # module level: the warm template imports this module once, forks reuse it


def train_digits(source: str, steps: int = 300, seed: int = 0, batch: int = 64) -> dict:
    """Train the digits MLP with the rule in `source`; the job body, also called in-process."""
    torch.set_num_threads(1)
    rule = load_rule(source, name="candidate")
    x = torch.tensor(_DIGITS.data, dtype=torch.float32) / 16.0
    y = torch.tensor(_DIGITS.target, dtype=torch.long)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = RuleOptimizer(param_groups(model), rule, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    return {"final_loss": float(loss.detach()), "accuracy": acc, "train_wall_s": time.perf_counter() - t0}


def digits_job(source: str, payload: dict) -> dict:
    """The sandbox job form of `train_digits`."""
    return train_digits(source, int(payload.get("steps", 300)), int(payload.get("seed", 0)))


def main() -> None:
    from optforge import sandbox

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    src = seeds.source("adamw")
    payload = {"steps": args.steps}
    job = "sandbox_overhead:digits_job"
    limits = {m: sandbox.Limits(timeout_s=600.0, mode=m) for m in ("warm", "cold")}
    train_digits(src, args.steps)  # warm-up: first imports, template start
    for m in ("warm", "cold"):
        r = sandbox.run(src, job, payload, sandbox.RULE_POLICY, limits[m])
        assert r.ok, (m, r.reason, r.exception, r.stderr_tail)
    modes = ("in-process", "warm", "cold")
    total: dict[str, list[float]] = {m: [] for m in modes}
    inner: dict[str, list[float]] = {m: [] for m in modes}
    empty: dict[str, list[float]] = {"warm": [], "cold": []}
    accs = set()
    for _ in range(args.reps):
        for m in modes:
            t = time.perf_counter()
            if m == "in-process":
                value = train_digits(src, args.steps)
            else:
                r = sandbox.run(src, job, payload, sandbox.RULE_POLICY, limits[m])
                assert r.ok, r.exception
                value = r.value
            total[m].append(time.perf_counter() - t)
            inner[m].append(value["train_wall_s"])
            accs.add(round(value["accuracy"], 6))
        for m in ("warm", "cold"):
            t = time.perf_counter()
            assert sandbox.run("x = 1\n", "optforge.sandbox.selftest:noop", {}, sandbox.RULE_POLICY, limits[m]).ok
            empty[m].append(time.perf_counter() - t)
    med = statistics.median
    # overhead of one call = its wall time minus the training loop's own wall time, measured inside
    over = {m: med([a - b for a, b in zip(total[m], inner[m])]) for m in modes}
    print(f"digits MLP 64-128-10, {args.steps} steps, AdamW seed; medians of {args.reps} alternating rounds")
    print(f"same accuracy in every mode: {len(accs) == 1} ({sorted(accs)})")
    print(f"{'mode':11s} {'call s':>8s} {'train s':>8s} {'overhead ms':>12s} {'% of this job':>14s} {'% of a 5 s job':>15s} {'empty job ms':>13s}")
    for m in modes:
        e = f"{med(empty[m]) * 1e3:13.1f}" if m in empty else f"{'-':>13s}"
        print(f"{m:11s} {med(total[m]):8.3f} {med(inner[m]):8.3f} {over[m] * 1e3:12.1f} "
              f"{100 * over[m] / med(inner[m]):13.1f}% {100 * over[m] / 5.0:14.1f}% {e}")
    warm_empty = med(empty["warm"]) * 1e3
    warm_over = (over["warm"] - over["in-process"]) * 1e3
    print(f"targets: warm start (empty job) {warm_empty:.0f} ms < 100 ms: {warm_empty < 100}; "
          f"warm overhead {warm_over:.0f} ms = {warm_over / 50:.1f} % of a 5 s job < 5 %: {warm_over < 250}")


if __name__ == "__main__":
    main()
