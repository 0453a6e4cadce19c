"""Do the stored baselines hold on this machine? `verify` re-runs tuned AdamW at its chosen lr on one
seed per task and compares the best loss with the stored one, within delta; `verify_for_run` is the
start-of-run check; `measure_rho` re-runs under every ATEN_CPU_CAPABILITY to measure each task's rho.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Mapping, Sequence

from optforge.evaluators.baselines.files import BaselineError, cost_parts, cost_text, load, machine_info, payload_from
from optforge.evaluators.baselines.lookup import RHO, chosen_run, pick_seeds, task_delta
from optforge.evaluators.baselines.statistics import add_statistics
from optforge.evaluators.scoring import running_min


def rebuild_hint(data: Mapping[str, Any], suite: str) -> str:
    """The exact rebuild command and what the stored build cost."""
    parts = [("" if what == "build" else f"+ {what}: ") + cost_text(c) for what, c in cost_parts(data)]
    add = " && optforge baselines --suite {0} --add-wd".format(suite) if len(data.get("weight_decays") or []) > 1 else ""
    return (f"`optforge baselines --suite {suite} --rebuild{add}` (measured cost of the stored build, 2 jobs: "
            + "; ".join(parts) + ")")


def verify(data: Mapping[str, Any], suite_name: str) -> list[dict]:
    """Re-run tuned AdamW at its chosen lr (`lookup.chosen_run`: picked on the selection seeds) on the
    first selection seed of every task, here and now (trusted, in-process: AdamW is our own seed), and
    compare its best loss with the stored one.

    Returns one row per task: task, seed, lr, stored and measured best loss, their relative
    difference, delta and ok (|difference| <= delta).
    """
    from optforge import seeds
    from optforge.evaluators.tasks import get_suite
    from optforge.evaluators.train import train_rule, validation_curve

    suite = get_suite(suite_name)
    payload = payload_from(data)
    rule = seeds.load("adamw")
    rows = []
    for task in suite.tasks:
        t = data["tasks"][task.name]
        T = int(t["T"])
        run = chosen_run(payload, task.name, T)  # tuned AdamW: its lr picked on the selection seeds
        if run is None:
            raise BaselineError(f"baselines of suite '{suite_name}' hold no AdamW run of task '{task.name}' at "
                                f"{T} steps on every selection seed; rebuild: {rebuild_hint(data, suite_name)}")
        seed = pick_seeds(payload.get("selection_seeds"), [run])[0]
        steps = [int(x) for x in run["steps"]]
        trace = train_rule(task, rule, lr=float(run["lr"]), seed=seed, steps=T, eval_steps=steps, total_steps=T)
        curve = validation_curve(task, seed, trace.snapshots)
        here = min(running_min([curve.get(x, math.inf) for x in steps]))
        stored = min(running_min([math.inf if v is None else v for v in run["val"][str(seed)]]))
        delta = task_delta(payload, task.name, len(data.get("report_seeds") or [1]))
        rel = abs(here - stored) / abs(stored) if stored else abs(here - stored)
        rows.append({"task": task.name, "seed": seed, "lr": float(run["lr"]), "stored": stored, "here": here,
                     "rel_diff": rel, "delta": delta, "ok": bool(abs(here - stored) <= delta)})
    return rows


def cpu_capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY levels this CPU can run (default always; avx2 and avx512 per /proc/cpuinfo)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), []))
    except OSError:
        pass
    return ["default"] + [c for c, flag in (("avx2", "avx2"), ("avx512", "avx512f")) if flag in flags]


def measure_rho(suite: str, capabilities: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Per task, the relative difference of tuned AdamW's best loss between the stored curves and this
    machine under each ATEN_CPU_CAPABILITY (one subprocess each: the level is read when torch loads).

    Returns {task: {capability: relative difference from the stored best}}; the task's rho is the
    largest of them, and of the differences between capabilities.
    """
    import subprocess

    out: dict[str, dict[str, float]] = {}
    for cap in capabilities or cpu_capabilities():
        env = {**os.environ, "ATEN_CPU_CAPABILITY": cap}
        p = subprocess.run([sys.executable, "-m", "optforge", "baselines", "--suite", suite, "--verify", "--json"],
                           capture_output=True, text=True, env=env, timeout=7200)
        if not p.stdout.strip():
            raise BaselineError(f"verify under ATEN_CPU_CAPABILITY={cap} printed nothing: {p.stderr[-2000:]}")
        for row in json.loads(p.stdout):
            out.setdefault(row["task"], {})[cap] = row["here"]
            out[row["task"]]["stored"] = row["stored"]
    rel = {}
    for task, vals in out.items():
        stored = vals.pop("stored")
        here = list(vals.values())
        spread = max(here) - min(here)
        rel[task] = {**{c: abs(v - stored) / abs(stored) for c, v in vals.items()},
                     "across": spread / abs(stored)}
    return rel


def set_measured_rho(data: dict, measured: Mapping[str, Mapping[str, float]]) -> dict:
    """Store each task's measured rho (the largest measured relative difference) and redo the statistics."""
    for task, diffs in measured.items():
        if task in data["tasks"]:
            data["tasks"][task]["rho_measured"] = max(diffs.values())
            data["tasks"][task]["rho_by_capability"] = dict(diffs)
    data["rho_measured_on"] = machine_info()
    return add_statistics(data, data.get("rho") or RHO)


CHECK_MODES = ("refuse", "warn", "off")


def verify_for_run(suites: Sequence[str], mode: str = "refuse") -> list[str]:
    """The start-of-run check: `verify` every suite a run scores on (seconds for `train`).

    mode "refuse" raises BaselineError naming the rebuild command and its measured cost; "warn"
    returns those messages (the caller prints them); "off" checks nothing. Returns the warnings.
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"baselines check mode {mode!r}: use one of {', '.join(CHECK_MODES)}")
    if mode == "off":
        return []
    problems = []
    for suite in dict.fromkeys(suites):
        data = load(suite)
        message = verify_message(verify(data, suite), data, suite)
        if message:
            problems.append(message)
    if problems and mode == "refuse":
        raise BaselineError("; ".join(problems) + " (or set `baselines_check: warn` to run anyway)")
    return problems


def verify_message(rows: Sequence[Mapping[str, Any]], data: Mapping[str, Any], suite: str) -> str | None:
    """None when every task's AdamW rerun matched within delta, else what differs and how to rebuild."""
    bad = [r for r in rows if not r["ok"]]
    if not bad:
        return None
    what = ", ".join(f"{r['task']} {r['here']:.6g} vs stored {r['stored']:.6g} (delta {r['delta']:.2g})" for r in bad)
    return (f"the stored AdamW baselines of suite '{suite}' do not hold on this machine ({what}); scores against "
            f"them would be wrong by more than their resolution. Rebuild them here: {rebuild_hint(data, suite)}")
