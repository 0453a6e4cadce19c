"""A rule that forged its step-time ratio by loading the CPU while AdamW was timed (attack reproducer).

`optforge.evaluators.job.step_seconds_pair` times the rule's and AdamW's round trips in the same job,
with both rule processes alive. The rule (checker off) sets an interval timer whose SIGALRM handler
spins for 0.9 ms of every 1 ms while the rule has not been called for 3 ms: the signal interrupts the
rule process's wait for its next request, so its code runs while AdamW is timed, and not while it is
itself. AdamW's timed steps slow down, the rule's do not, and its reported ratio
(`timed_step_seconds / adamw_step_seconds`) drops. The honest twin is the same Adam update without it.

Run: python benchmarks/step_time_spinner.py [--reps 3] [--task smoke_mix]
Prints the ratio of each twin per repetition, side by side. Measured on a shared 2-CPU machine (load
average about 3.5), 2026-12-01 02:35 UTC, smoke_mix: honest 0.96, 0.98, 0.95; spinning 0.76, 0.67,
0.65. Before rule processes had `RLIMIT_NPROC` 1, a rule forked one spinning helper per CPU instead:
honest 0.99, 0.98; spinning 0.39, 0.39. Closed since: `step_seconds_pair` keeps the other rule's
process stopped (SIGSTOP, `RemoteRule.stopped`) while one is timed. Measured after, 2026-12-01 03:05
UTC, same machine and task: honest 0.95, 0.94, 1.07; spinning 0.90, 1.00, 1.08.
"""

from __future__ import annotations

import argparse

RULE = '''
import signal, time
import torch
LR = 1e-3
SPIN = SPIN_FLAG
_last = [0.0]  # when the rule was last called

def _spin(signum, frame):
    # runs between the trainer's calls too: the signal interrupts the rule process's wait for its next request
    if time.monotonic() - _last[0] > 0.003:
        end = time.monotonic() + 0.0009
        while time.monotonic() < end:
            pass

def init(p, ctx):
    if SPIN and signal.getitimer(signal.ITIMER_REAL)[1] == 0:
        signal.signal(signal.SIGALRM, _spin)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}

def update(p, g, state, ctx):
    _last[0] = time.monotonic()
    m, v = state["m"], state["v"]
    m.mul_(0.9).add_(g, alpha=0.1)
    v.mul_(0.999).addcmul_(g, g, value=0.001)
    out = -ctx.lr * m / (v.sqrt() + 1e-8)
    _last[0] = time.monotonic()
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
