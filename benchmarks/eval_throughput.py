"""Evaluation throughput: wall time per candidate per suite, candidates per hour, and the overhead.

    python benchmarks/eval_throughput.py [--suites smoke,train,heldout] [--rule adamw] [--jobs 2]

For each suite it runs one full `evaluate()` of the rule (the protocol, the sandbox, trusted
validation) and prints side by side:
  - wall seconds per candidate, and candidates per hour at that rate (on this machine);
  - the raw training compute inside those evaluations (the wall time of the training runs
    themselves, measured inside the sandboxed jobs), summed over jobs;
  - overhead = 1 - training compute / (wall x jobs): the protocol, the sandbox start-up per call,
    trusted validation and idle workers. Target: train <= 60 s wall, overhead < 10 %.
Suites without committed baselines are skipped with a note. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default="smoke,train,heldout")
    ap.add_argument("--rule", default="adamw", help="seed name")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from optforge import seeds
    from optforge.evaluators import EvalRequest, baseline_payload, evaluate
    from optforge.evaluators.baselines import BaselineError

    torch.set_num_threads(1)
    source = seeds.source(args.rule)
    rows = []
    for suite in [s.strip() for s in args.suites.split(",") if s.strip()]:
        try:
            payload = baseline_payload(suite)
        except BaselineError as e:
            print(f"{suite}: skipped ({e})", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        r = evaluate(EvalRequest(source, suite, suite=suite, baselines=payload, workers=args.jobs))
        wall = time.perf_counter() - t0
        train = float(r.metrics.get("train_seconds") or 0.0)
        calls = int(r.metrics.get("sandbox_calls") or 0)
        rows.append((suite, r.status.value, wall, 3600.0 / wall, train, 1.0 - train / (wall * args.jobs), calls, r.fitness))
    print(f"rule {args.rule}, {args.jobs} jobs at once")
    print(f"{'suite':<14}{'status':<9}{'wall s':>8}{'cand/h':>8}{'train s':>9}{'overhead':>10}{'calls':>7}{'fitness':>9}")
    for suite, status, wall, per_h, train, over, calls, fit in rows:
        print(f"{suite:<14}{status:<9}{wall:>8.1f}{per_h:>8.1f}{train:>9.1f}{over:>9.0%}{calls:>7d}{fit:>+9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
