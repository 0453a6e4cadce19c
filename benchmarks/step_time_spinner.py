"""A rule that forges its step-time ratio by loading the CPU while AdamW is timed (attack reproducer).

`optforge.evaluators.job.step_seconds_pair` times the rule's and AdamW's round trips in the same job,
with both rule processes alive. A rule process (checker off) forks one helper per CPU into its own PID
namespace; the helpers spin while the rule has not been called for 3 ms (so while AdamW is timed, or
between rounds) and sleep while it is being served. AdamW's timed step slows down, the rule's does not,
and its reported ratio (`timed_step_seconds / adamw_step_seconds`) drops. The honest twin is the same
Adam update without the helpers.

Run: python benchmarks/step_time_spinner.py [--reps 2] [--task smoke_mix]
Prints the ratio of each twin per repetition, side by side. Measured on a shared 2-CPU machine (load
average 3.5), 2026-12-01 02:30 UTC, smoke_mix: honest 1.03 and 0.95, spinning 0.41 and 0.50 (the
rule seemed twice as fast against AdamW). Not closed: the timing would have to keep the other rule
process (and whatever it started) from running while one is timed.
"""

from __future__ import annotations

import argparse

RULE = '''
import mmap, os, struct, time
import torch
LR = 1e-3
SPIN = SPIN_FLAG
_last = mmap.mmap(-1, 8)  # shared with the helpers: when the rule was last called
_helpers = []

def _spin():
    while True:
        if time.monotonic() - struct.unpack_from("<d", _last, 0)[0] > 0.003:
            x = 0
            for i in range(20000):
                x += i
        else:
            time.sleep(0.0002)

def init(p, ctx):
    if SPIN and not _helpers:
        _helpers.append(1)
        for _ in range(os.cpu_count() or 2):
            if os.fork() == 0:
                _spin()
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}

def update(p, g, state, ctx):
    struct.pack_into("<d", _last, 0, time.monotonic())
    m, v = state["m"], state["v"]
    m.mul_(0.9).add_(g, alpha=0.1)
    v.mul_(0.999).addcmul_(g, g, value=0.001)
    out = -ctx.lr * m / (v.sqrt() + 1e-8)
    struct.pack_into("<d", _last, 0, time.monotonic())
    return out
'''


def ratio(spin: bool, task: str) -> float:
    from optforge import sandbox

    runs = [{"task": task, "lr": 1e-3, "seed": 0, "steps": 5, "horizon": 20, "eval_steps": [5], "weight_decay": 0.0}]
    res = sandbox.run(RULE.replace("SPIN_FLAG", str(spin)), "optforge.evaluators.job:run_job", {"suite": "smoke", "runs": runs},
                      sandbox.RULE_POLICY, sandbox.Limits(timeout_s=120, static_check=False))
    if not res.ok or "failure" in res.value:
        raise RuntimeError(f"the job failed: {res.reason} {(res.value or {}).get('failure')}")
    r = res.value["runs"][0]
    return r["timed_step_seconds"] / r["adamw_step_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--task", default="smoke_mix")
    args = ap.parse_args()
    print(f"{'rep':>3}  {'honest ratio':>12}  {'spinning ratio':>14}")
    for rep in range(args.reps):
        print(f"{rep:>3}  {ratio(False, args.task):>12.2f}  {ratio(True, args.task):>14.2f}")


if __name__ == "__main__":
    main()
