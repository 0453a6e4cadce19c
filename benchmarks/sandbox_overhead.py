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
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    return {"final_loss": float(loss.detach()), "accuracy": acc}


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
    # warm-up: template start, first imports
    train_digits(src, args.steps)
    for m in ("warm", "cold"):
        r = sandbox.run(src, job, payload, sandbox.RULE_POLICY, limits[m])
        assert r.ok, (m, r.reason, r.exception, r.stderr_tail)
    times: dict[str, list[float]] = {"in-process": [], "warm": [], "cold": []}
    cpu: dict[str, list[float]] = {"in-process": [], "warm": [], "cold": []}
    noop: dict[str, list[float]] = {"warm": [], "cold": []}
    accs = set()
    for _ in range(args.reps):
        t, c = time.perf_counter(), time.process_time()
        accs.add(round(train_digits(src, args.steps)["accuracy"], 6))
        times["in-process"].append(time.perf_counter() - t)
        cpu["in-process"].append(time.process_time() - c)
        for m in ("warm", "cold"):
            t = time.perf_counter()
            r = sandbox.run(src, job, payload, sandbox.RULE_POLICY, limits[m])
            times[m].append(time.perf_counter() - t)
            assert r.ok, r.exception
            cpu[m].append(r.cpu_s)
            accs.add(round(r.value["accuracy"], 6))
            t = time.perf_counter()
            sandbox.run("x = 1\n", "optforge.sandbox.selftest:noop", {}, sandbox.RULE_POLICY, limits[m])
            noop[m].append(time.perf_counter() - t)
    base = statistics.median(times["in-process"])
    print(f"digits MLP 64-128-10, {args.steps} steps, AdamW seed; median of {args.reps} alternating rounds")
    print(f"same accuracy in every mode: {len(accs) == 1} ({sorted(accs)})")
    print(f"{'mode':12s} {'job s':>8s} {'job cpu s':>10s} {'overhead ms':>12s} {'overhead %':>11s} {'empty job ms':>13s} {'% of a 5 s job':>15s}")
    print(f"{'in-process':12s} {base:8.3f} {statistics.median(cpu['in-process']):10.3f} {0.0:12.1f} {0.0:10.1f}% {'-':>13s} {'-':>15s}")
    for m in ("warm", "cold"):
        med = statistics.median(times[m])
        over = med - base
        empty = statistics.median(noop[m])
        print(f"{m:12s} {med:8.3f} {statistics.median(cpu[m]):10.3f} {over * 1e3:12.1f} {100 * over / base:10.1f}% {empty * 1e3:13.1f} {100 * over / 5.0:14.1f}%")
    warm_empty = statistics.median(noop["warm"]) * 1e3
    warm_over = (statistics.median(times["warm"]) - base) * 1e3
    print(f"targets: warm start {warm_empty:.0f} ms (< 100 ms: {warm_empty < 100}); "
          f"warm overhead {warm_over / 50:.1f} % of a 5 s job (< 5 %: {warm_over < 250})")


if __name__ == "__main__":
    main()
