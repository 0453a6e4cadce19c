"""Tuned baselines: AdamW curves to 4T (what every score is measured against) and the references.

Computed once per suite version through the same protocol and sandboxed job as any candidate, and
committed for the shipped suites as `optforge/evaluators/baselines/<suite>.json`, keyed by suite
version and torch major.minor, so a fresh install pays nothing and a remote Ray node needs no cache
(the AdamW part travels with each request, `baseline_payload`). Other suites (dotted paths) are
cached under $OPTFORGE_CACHE (default ~/.cache/optforge).

- AdamW: 7-point half-decade grid 1e-4..1e-1, every seed (selection and report), horizon T; then
  horizons 2T and 4T on 3 points around the previous horizon's best. Each grid extends at an edge
  (at most twice), as for candidates.
- SGD-momentum, Lion, Muon: 5 points around their LR (+ up to 2 extensions) on the selection seeds,
  full T, then the chosen lr on the report seeds: at least as many lr trials and seeds as a candidate
  gets (tuning parity), scored exactly like a candidate on fresh seeds.
- Weight decay (for stages that tune it, the held-out one by default): at AdamW's chosen lr of every
  horizon, each decoupled weight decay of `WD_GRID` on every seed. Those curves join AdamW's only when
  the evaluation tunes weight decay too, with the same grid (`add_weight_decay` adds them to a build).
- A digest of the suite's task code and the training loop is stored: a change without a version bump
  is reported as a warning.
- Format 2 adds per task the loss resolution (`resolution`: rho, AdamW's best loss and per-seed
  bests, from which delta follows for any number of seeds) and sigma_task, the per-seed sd of the
  paired score of the references against AdamW (`sigma`), and the machine the file was built on.
  `upgrade` derives them for a format-1 file from its stored per-seed curves, without reruns.
- `verify` re-runs tuned AdamW at its chosen lr on one seed per task on this machine and compares
  the best loss with the stored one, within delta.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from optforge.evaluators.protocol import ProtocolConfig, RunOutcome, TaskInfo, TaskTuning, pick, run_spec, tune
from optforge.evaluators.tasks.base import SEED_SETS
from optforge.evaluators.scoring import (
    CEILING, FLOOR, RHO_FLOOR, SCORE_VERSION, BaselineCurve, aggregate, half_width, mean_curve, resolution, running_min, task_score,
)

log = logging.getLogger(__name__)

FORMAT = 2
RHO = 1e-4
"""The suite-wide relative resolution of a best loss across machines and kernels: RHO_FLOOR, which the
measured differences stay below on every task of train, heldout_tiny and smoke (largest 6.9e-5). A
task that amplifies float differences more stores its own measured rho (`measure_rho`; on heldout
cnn_bnres 9.8e-2, mlp_deep 1.9e-2, mlp_digits_fullbatch 1.3e-3). See docs/suites.md "The score"."""
REFERENCES = ("adamw", "sgd", "lion", "muon")
ADAMW_GRID = tuple(range(-2, 5))  # around LR=1e-3: 1e-4, 3.2e-4, ..., 1e-1
REFERENCE_GRID = (-2, -1, 0, 1, 2)
HORIZONS = (2, 4)
WD_GRID = (0.01, 0.1, 1.0)  # nonzero decoupled weight decays (0 is always an arm): a decade grid, since
# what matters is lr * wd * steps, and tuned lrs here span 1e-3..1e-1
COMMITTED_DIR = Path(__file__).parent / "baselines"


class BaselineError(RuntimeError):
    """Baselines are missing or do not match the suite; the message says how to rebuild them."""


def torch_version() -> str:
    """torch major.minor: baselines are keyed by it (kernels change numbers across releases)."""
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def suite_digest(suite: Any) -> str:
    """Hash of the task definitions (their reprs and module sources) and of the training loop."""
    from optforge.evaluators import train

    h = hashlib.sha256()
    modules = {train.__name__}
    for t in suite.tasks:
        h.update(repr(t).encode())
        modules.add(type(t).__module__)
    for name in sorted(modules):
        try:
            h.update(inspect.getsource(sys.modules[name]).encode())
        except (OSError, TypeError, KeyError):
            h.update(name.encode())
    return h.hexdigest()[:16]


def baseline_path(suite: str) -> Path:
    """Where the baselines of `suite` live: committed for shipped names, the user cache otherwise."""
    if re.fullmatch(r"[A-Za-z0-9_]+", suite):
        return COMMITTED_DIR / f"{suite}.json"
    cache = Path(os.environ.get("OPTFORGE_CACHE") or Path.home() / ".cache" / "optforge")
    return cache / "baselines" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", suite) + ".json")


def load(suite: str) -> dict:
    """The stored baselines of `suite` (no checks; see `check`)."""
    path = baseline_path(suite)
    if not path.exists():
        raise BaselineError(
            f"no baselines for suite '{suite}' (looked for {path}); build them with "
            f"`optforge baselines --suite {suite} --rebuild`"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(data: Mapping[str, Any], path: Path) -> None:
    """Write atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a committed package file is world-readable
    os.replace(tmp, path)


def check(data: Mapping[str, Any], suite: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) of stored baselines against a live Suite and this torch."""
    errors, warnings = [], []
    if data.get("format") != FORMAT:
        how = (f"upgrade it without reruns: `optforge baselines --suite {suite.name} --upgrade`"
               if data.get("format") == 1 else f"rebuild: `optforge baselines --suite {suite.name} --rebuild`")
        errors.append(f"baseline format {data.get('format')!r}, this optforge reads {FORMAT}; {how}")
    if data.get("suite_version") != suite.version:
        how = (f"its tasks and training loop are unchanged, so `optforge baselines --suite {suite.name} --add-seeds` "
               "carries the file over, running AdamW only on the seeds it lacks"
               if data.get("suite_digest") == suite_digest(suite) else f"rebuild: `optforge baselines --suite {suite.name} --rebuild`")
        errors.append(
            f"baselines were built for suite '{suite.name}' version {data.get('suite_version')!r}, "
            f"the suite is now version {suite.version!r}; {how}"
        )
    missing = sorted(set(suite.task_names) - set(data.get("tasks", {})))
    if missing:
        errors.append(f"baselines lack tasks {missing}; rebuild: `optforge baselines --suite {suite.name} --rebuild`")
    if data.get("suite_digest") and data.get("suite_digest") != suite_digest(suite):
        warnings.append(
            f"the tasks or training loop of suite '{suite.name}' changed since its baselines were built "
            f"(same version {suite.version!r}); bump the suite version and rebuild"
        )
    lacking = [s for s in suite.all_seeds if s not in {int(x) for x in data.get("seeds") or ()}]
    if lacking and not errors:
        warnings.append(
            f"baselines of suite '{suite.name}' lack AdamW runs on its seeds {lacking}; scores on them fall back to "
            f"the seeds the baselines have; add them: `optforge baselines --suite {suite.name} --add-seeds`"
        )
    if data.get("torch") != torch_version():
        warnings.append(
            f"baselines were measured with torch {data.get('torch')}, this is torch {torch_version()}; "
            "scores may shift slightly (rebuild to be exact)"
        )
    return errors, warnings


def payload_from(data: Mapping[str, Any]) -> dict:
    """The part of stored baselines that scoring needs: AdamW's curves, step time and costs."""
    tasks = {}
    for name, t in data["tasks"].items():
        a = t["adamw"]
        tasks[name] = {
            "T": t["T"],
            "family": t.get("family", ""),
            "cost_per_step": t.get("cost_per_step", 1.0),
            "adamw": {k: a[k] for k in ("runs", "step_seconds", "state_bytes_per_param", "chosen") if k in a},
            **{k: t[k] for k in ("resolution", "sigma") if k in t},
        }
    keys = ("format", "suite", "suite_version", "torch", "seeds", "weight_decays", "rho", "selection_seeds",
            "report_seeds", "search_seeds", "cost")
    return {**{k: data.get(k) for k in keys}, "tasks": tasks}


def run_wd(run: Mapping[str, Any]) -> float:
    """The weight decay of a stored run (builds before weight-decay tuning have none: 0)."""
    return float(run.get("wd", 0.0))


def weight_decay_grid(payload: Mapping[str, Any]) -> tuple[float, ...]:
    """The nonzero weight decays AdamW was given in these baselines (empty: none)."""
    return tuple(float(w) for w in payload.get("weight_decays") or () if float(w) > 0)


def adamw_curves(
    payload: Mapping[str, Any], task: str, seeds: Sequence[int], *, weight_decay: bool = False
) -> tuple[list[BaselineCurve], list[int]]:
    """AdamW's mean curves on `task` over `seeds` (those the baseline has; all if none overlap).

    Returns the curves (one per lr, horizon and, with `weight_decay`, weight decay that did not
    diverge on those seeds) and the seeds used.
    """
    runs = [r for r in payload["tasks"][task]["adamw"]["runs"] if weight_decay or run_wd(r) == 0]
    have = {int(s) for r in runs for s in r["val"]}
    use = [s for s in seeds if s in have] or sorted(have)
    curves = []
    for r in runs:
        vals = [r["val"].get(str(s)) for s in use]
        if any(v is None or r["diverged"].get(str(s)) for v, s in zip(vals, use)):
            continue
        curves.append(BaselineCurve(float(r["lr"]), int(r["horizon"]), tuple(r["steps"]), tuple(mean_curve(vals))))
    return curves, use


def _outcomes(rec: Mapping[str, Any], seeds: Sequence[int]) -> list[RunOutcome]:
    """A stored run record as RunOutcomes on `seeds` (for `pick`, which ranks outcomes)."""
    from optforge.evaluators.protocol import RunSpec

    out = []
    for s in seeds:
        val = [math.inf if v is None else float(v) for v in rec["val"][str(s)]]
        spec = RunSpec("", int(rec.get("h", 0)), float(rec["lr"]), int(s), int(rec["steps"][-1]), int(rec["horizon"]),
                       tuple(int(x) for x in rec["steps"]), run_wd(rec))
        out.append(RunOutcome(spec, list(spec.eval_steps[: len(val)]), val, [],
                              0 if rec["diverged"].get(str(s)) else None))
    return out


def _runs_at(task_rec: Mapping[str, Any], horizon: int) -> list[dict]:
    return [r for r in task_rec["adamw"]["runs"] if int(r["horizon"]) == int(horizon) and run_wd(r) == 0]


def _seeds_of(rec: Mapping[str, Any]) -> list[int]:
    return sorted(int(s) for s in rec["val"])


def task_resolution(task_rec: Mapping[str, Any], rho: float = RHO) -> dict:
    """What delta is made of for one task: rho (the suite's, or the task's measured one if larger:
    `measure_rho`), AdamW's best mean loss at horizon T (the arm with the lowest mean best over all
    stored seeds) and that arm's per-seed best losses."""
    rho = max(float(rho), float(task_rec.get("rho_measured") or 0.0))
    runs = [r for r in _runs_at(task_rec, task_rec["T"]) if not any(r["diverged"].values())]
    if not runs:
        return {"rho": max(rho, RHO_FLOOR), "best_loss": None, "seed_bests": []}
    seeds = _seeds_of(runs[0])
    best = min(runs, key=lambda r: min(running_min(mean_curve([r["val"][str(s)] for s in seeds]))))
    return {
        "rho": max(float(rho), RHO_FLOOR),
        "best_loss": min(running_min(mean_curve([best["val"][str(s)] for s in seeds]))),
        "seed_bests": [min(running_min(best["val"][str(s)])) for s in seeds],
    }


def task_delta(payload: Mapping[str, Any], task: str, n: int) -> float:
    """delta of `task` for a score on n seeds (`scoring.resolution`); 0 with no stored resolution."""
    res = payload["tasks"][task].get("resolution") or task_resolution(payload["tasks"][task], payload.get("rho") or RHO)
    if res.get("best_loss") is None:
        return 0.0
    return resolution(res["best_loss"], res["seed_bests"], res["rho"], n)


def task_sigma(payload: Mapping[str, Any], task: str) -> float | None:
    """sigma_task: the per-seed sd of the paired score against AdamW (None if never measured)."""
    sigma = payload["tasks"][task].get("sigma")
    return None if sigma is None else float(sigma)


def selected_runs(payload: Mapping[str, Any], task: str, *, weight_decay: bool = False) -> list[dict]:
    """AdamW's runs as a candidate would have them: at each horizon the lr (and, with `weight_decay`,
    the weight decay) picked by `protocol.pick` on the selection seeds only, so that no report seed
    helps choose AdamW's arm. Falls back to every stored seed if none is a selection seed."""
    t = payload["tasks"][task]
    runs = t["adamw"]["runs"]
    have = {int(s) for r in runs for s in r["val"]}
    sel = [int(s) for s in payload.get("selection_seeds") or () if int(s) in have] or sorted(have)
    delta = task_delta(payload, task, len(sel))
    out = []
    for horizon in sorted({int(r["horizon"]) for r in runs}):
        plain = [r for r in _runs_at(t, horizon) if all(str(s) in r["val"] for s in sel)]
        if not plain:
            continue
        best = plain[pick({i: _outcomes(r, sel) for i, r in enumerate(plain)}, delta)]
        arms = [best]
        if weight_decay:
            arms += [r for r in runs if int(r["horizon"]) == horizon and run_wd(r) > 0 and r.get("h") == best.get("h")
                     and all(str(s) in r["val"] for s in sel)]
        out.append(arms[pick({i: _outcomes(r, sel) for i, r in enumerate(arms)}, delta)])
    return out


def paired_seed_scores(
    payload: Mapping[str, Any], task: str, steps: Sequence[int], per_seed: Mapping[int, Sequence[float | None]],
    *, weight_decay: bool = False,
) -> dict[int, float]:
    """Each seed's curve scored against AdamW on that same seed (common random numbers): the paired
    per-seed score, with delta for one seed. AdamW's side is `selected_runs` (its arms picked on the
    selection seeds), so no report seed picks AdamW's lr. Seeds AdamW lacks are left out."""
    t = payload["tasks"][task]
    chosen = selected_runs(payload, task, weight_decay=weight_decay)
    delta = task_delta(payload, task, 1)
    out = {}
    for seed, val in per_seed.items():
        key = str(int(seed))
        curves = [BaselineCurve(float(r["lr"]), int(r["horizon"]), tuple(r["steps"]),
                                tuple(math.inf if v is None else float(v) for v in r["val"][key]))
                  for r in chosen if key in r["val"] and not r["diverged"].get(key)]
        if not any(c.horizon == int(t["T"]) for c in curves):
            continue
        vals = [math.inf if v is None else float(v) for v in val]
        out[int(seed)] = task_score(steps, vals, curves, int(t["T"]), delta=delta,
                                    diverged=any(not math.isfinite(v) for v in vals)).score
    return out


def measure_sigma(data: Mapping[str, Any], task: str) -> float | None:
    """sigma_task from the references (every one but AdamW) on their report seeds: the pooled per-seed
    sd of their paired scores. A reference clipped at the floor or ceiling on some seed shows no spread
    there, so it is left out while another reference is not."""
    payload = payload_from(data)
    variances, clipped = [], []
    for ref, rec in sorted(data["tasks"][task].get("references", {}).items()):
        run = rec.get("reported") or {}
        if not run or not run.get("val"):
            continue
        xs = list(paired_seed_scores(payload, task, run["steps"], {int(s): v for s, v in run["val"].items()}).values())
        if len(xs) < 2:
            continue
        m = sum(xs) / len(xs)
        var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
        (clipped if any(x <= FLOOR or x >= CEILING for x in xs) else variances).append(var)
    use = variances or clipped
    return math.sqrt(sum(use) / len(use)) if use else None


def rechoose(data: dict, rho: float = RHO) -> None:
    """Re-pick AdamW's `chosen` lr of every stored horizon with `protocol.pick` at the task's delta
    (a horizon with weight-decay runs keeps the lr they were measured at)."""
    for t in data["tasks"].values():
        res = task_resolution(t, rho)
        chosen = t["adamw"].setdefault("chosen", {})
        for horizon in sorted({int(r["horizon"]) for r in t["adamw"]["runs"]}):
            runs = [r for r in _runs_at(t, horizon)]
            if not runs or any(run_wd(r) > 0 and int(r["horizon"]) == horizon for r in t["adamw"]["runs"]):
                continue  # weight-decay runs were measured at this horizon's chosen lr: it stays
            seeds = _seeds_of(runs[0])
            delta = resolution(res["best_loss"], res["seed_bests"], res["rho"], len(seeds)) if res["best_loss"] is not None else 0.0
            chosen[str(horizon)] = pick({int(r["h"]): _outcomes(r, seeds) for r in runs if "h" in r}, delta)


def add_statistics(data: dict, rho: float = RHO) -> dict:
    """Format 2: resolution and sigma per task, AdamW's chosen lrs by the delta rule, the table."""
    data["rho"] = max(float(rho), RHO_FLOOR)
    rechoose(data, rho)
    for name, t in data["tasks"].items():
        t["resolution"] = task_resolution(t, rho)
        t["resolution"]["delta"] = task_delta(data, name, len(data.get("report_seeds") or [1]))
    for name, t in data["tasks"].items():
        t["sigma"] = measure_sigma(data, name)
    data["format"] = FORMAT
    data["score_version"] = SCORE_VERSION
    data["table"] = reference_table(data)
    return data


def upgrade(data: Mapping[str, Any], rho: float = RHO) -> dict:
    """A format-1 file as format 2, from its stored per-seed curves (no training runs)."""
    if data.get("format") not in (1, FORMAT):
        raise BaselineError(f"cannot upgrade baseline format {data.get('format')!r}; rebuild them")
    out = json.loads(json.dumps(data))
    out.setdefault("machine", {"note": "built before the machine was recorded (format 1)"})
    out["upgraded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return add_statistics(out, rho)


def machine_info() -> dict:
    """The CPU model, torch, BLAS, CPU kernel level and thread count baselines are measured with."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    return {
        "cpu": cpu,
        "torch": torch.__version__,
        "blas": blas.group(1) if blas else "unknown",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": 1,  # every training job and the trusted validation run single-threaded
    }


def rebuild_hint(data: Mapping[str, Any], suite: str) -> str:
    """The exact rebuild command and what the stored build cost."""
    cost = data.get("cost") or {}
    parts = [f"{cost.get('runs', '?')} runs, {cost.get('cpu_seconds', '?')} s CPU, {cost.get('wall_seconds', '?')} s wall"]
    for key in ("references", "weight_decay"):
        if isinstance(cost.get(key), dict):
            c = cost[key]
            parts.append(f"+ {key}: {c.get('runs')} runs, {c.get('cpu_seconds')} s CPU, {c.get('wall_seconds')} s wall")
    add = " && optforge baselines --suite {0} --add-wd".format(suite) if len(data.get("weight_decays") or []) > 1 else ""
    return (f"`optforge baselines --suite {suite} --rebuild{add}` (measured cost of the stored build, 2 jobs: "
            + "; ".join(parts) + ")")


def verify(data: Mapping[str, Any], suite_name: str) -> list[dict]:
    """Re-run tuned AdamW at its chosen lr on the first stored seed of every task, here and now
    (trusted, in-process: AdamW is our own seed), and compare its best loss with the stored one.

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
        h = (t["adamw"].get("chosen") or {}).get(str(T))
        runs = _runs_at(t, T)
        run = next((r for r in runs if r.get("h") == h), None) or min(
            runs, key=lambda r: min(running_min(mean_curve([r["val"][str(s)] for s in _seeds_of(r)]))))
        seed = _seeds_of(run)[0]
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


def _runs_record(tt: TaskTuning) -> list[dict]:
    out = []
    for h in sorted(tt.full):
        runs: list[RunOutcome] = tt.full[h]
        first = runs[0]
        out.append(
            {
                "h": h,
                "lr": first.spec.lr,
                "horizon": tt.horizon,
                "steps": list(first.spec.eval_steps),
                "val": {str(r.spec.seed): [v if math.isfinite(v) else None for v in r.val] for r in runs},
                "diverged": {str(r.spec.seed): r.diverged for r in runs},
            }
        )
    return out


def _outcomes_record(runs: Sequence[RunOutcome]) -> dict:
    if not runs:
        return {}
    return {
        "h": runs[0].spec.h,
        "lr": runs[0].spec.lr,
        "horizon": runs[0].spec.horizon,
        "steps": list(runs[0].spec.eval_steps),
        "val": {str(r.spec.seed): [v if math.isfinite(v) else None for v in r.val] for r in runs},
        "diverged": {str(r.spec.seed): r.diverged for r in runs},
    }


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else 0.0


class _Tally:
    """Counts finished runs and reports (done, planned) to a progress callback."""

    def __init__(self, planned: int, report: Callable[[int, int], None] | None) -> None:
        self.planned, self.report, self.done = planned, report, 0

    def __call__(self, k: int) -> None:
        self.done += k
        if self.report:
            self.report(self.done, max(self.planned, self.done))


def _executor(ref: str, suite_name: str, suite: Any, limits: Any, workers: int, tally: _Tally) -> Any:
    """The sandboxed executor that trains seed `ref` on the suite's tasks (failures isolated per run)."""
    from optforge import sandbox, seeds
    from optforge.evaluators.validate import SandboxExecutor

    return SandboxExecutor(
        seeds.source(ref), suite_name, {t.name: t for t in suite.tasks},
        limits or sandbox.Limits(timeout_s=3600.0, memory_mb=4096), sandbox.RULE_POLICY,
        workers=workers, chunks_per_worker=3, progress=tally, name=ref, isolate_failures=True,
    )


def _same_version(data: Mapping[str, Any], suite_name: str) -> tuple[Any, list[TaskInfo]]:
    """The live suite and its tasks, after checking that stored `data` is for its version."""
    from optforge.evaluators.tasks import get_suite

    suite = get_suite(suite_name)
    if data.get("suite_version") != suite.version:
        raise BaselineError(f"baselines are for version {data.get('suite_version')!r}, suite is {suite.version!r}")
    return suite, [TaskInfo(t.name, t.family, int(t.steps)) for t in suite.tasks]


def build(
    suite_name: str,
    *,
    workers: int = 2,
    references: Sequence[str] = REFERENCES,
    limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
    seeds_used: Sequence[int] | None = None,
    horizons: Sequence[int] = HORIZONS,
    weight_decays: Sequence[float] = WD_GRID,
) -> dict:
    """Measure the baselines of a suite from scratch (real CPU: minutes for `train`).

    `seeds_used` defaults to every seed of the suite, selection, report and search (full common random
    numbers for every seed set); fewer seeds make a cheaper build, and evaluations on seeds it lacks fall back to the
    ones it has (flagged `baseline_seeds_differ`). `horizons`: the longer AdamW horizons, in units of T.
    """
    from optforge import seeds
    from optforge.evaluators.tasks import get_suite
    from optforge.evaluators.train import eval_points

    if "adamw" not in references:
        raise ValueError("references must include 'adamw': every score is measured against it")
    suite = get_suite(suite_name)
    infos = [TaskInfo(t.name, t.family, int(t.steps)) for t in suite.tasks]
    all_seeds = suite.all_seeds
    if seeds_used:
        all_seeds = tuple(int(s) for s in seeds_used)
    horizons = tuple(int(h) for h in horizons)
    n = len(infos) * len(all_seeds)
    n_sel, n_rep = len(suite.selection_seeds), len(suite.report_seeds)
    planned = n * (len(ADAMW_GRID) + 3 * len(horizons))
    planned += len(infos) * (len(REFERENCE_GRID) * n_sel + n_rep) * (len(references) - 1)
    planned += n * len([w for w in weight_decays if w > 0]) * (1 + len(horizons))
    tally = _Tally(planned, progress)
    t0 = time.time()
    cpu = 0.0
    deltas: dict[str, float] = {}
    result: dict[str, Any] = {
        "format": FORMAT,
        "machine": machine_info(),
        "suite": suite.name,
        "suite_version": suite.version,
        "suite_digest": suite_digest(suite),
        "torch": torch_version(),
        "seeds": list(all_seeds),
        "horizons": [1, *horizons],
        **{f"{kind}_seeds": list(suite.seeds_of(kind)) for kind in SEED_SETS},
        "tasks": {t.name: {"T": t.steps, "family": t.family, "references": {}} for t in infos},
    }
    for ref in references:
        lr0 = seeds.load(ref).lr
        ex = _executor(ref, suite_name, suite, limits, workers, tally)
        if ref == "adamw":
            tunings = [tune(infos, lr0, all_seeds, ex, eval_points, ProtocolConfig(grid=ADAMW_GRID, halving=False, max_extensions=2))]
            for tt in tunings[0].values():  # the delta rule needs AdamW's own seed spread: pick again
                tt.delta = _tuning_delta(tt, len(all_seeds))
                tt.chosen = pick(tt.full, tt.delta)
                deltas[tt.task.name] = _tuning_delta(tt, n_sel)
            for factor in horizons:
                grids = {k: (tt.chosen - 1, tt.chosen, tt.chosen + 1) for k, tt in tunings[-1].items()}
                cfg = ProtocolConfig(grid=(0,), halving=False, horizon_factor=factor, max_extensions=2)
                tunings.append(tune(infos, lr0, all_seeds, ex, eval_points, cfg, grids=grids))
            for t in infos:
                runs = [r for tn in tunings for h in tn[t.name].full for r in tn[t.name].full[h]]
                base = tunings[0][t.name]
                n_params = max(r.n_params for r in runs) or 1
                rec = result["tasks"][t.name]
                rec["adamw"] = {
                    "runs": [x for tn in tunings for x in _runs_record(tn[t.name])],
                    "chosen": {str(tn[t.name].horizon): tn[t.name].chosen for tn in tunings},
                    "step_seconds": _mean([r.step_seconds for r in base.full[base.chosen]]),
                    "state_bytes_per_param": max(r.state_bytes for r in runs) / n_params,
                }
                rec["cost_per_step"] = _mean([r.run_seconds / max(1, r.spec.steps) for r in runs])
            _add_wd_runs(result, infos, lr0, all_seeds, weight_decays, ex)
        else:
            _tune_reference(result, suite, infos, ref, lr0, ex, deltas)
        cpu += ex.cpu_s
    result["cost"] = {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu, 1), "runs": tally.done}
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        add_statistics(result)
    except Exception:  # noqa: BLE001 - the measured curves are worth keeping even if the table breaks
        log.exception("could not score the references of suite %s; the curves are kept", suite.name)
    return result


def derive(data: Mapping[str, Any], suite: Any, source_suite: Any) -> dict:
    """Baselines for `suite` cut from those of `source_suite`, when every task of `suite` is the very
    same task (equal definitions) there, with the same version and seeds. `train_quick` is a subset
    of `train`, so it needs no runs of its own."""
    if suite.version != data.get("suite_version") or source_suite.version != data.get("suite_version"):
        raise ValueError(f"cannot derive '{suite.name}' baselines: versions differ")
    if any(tuple(suite.seeds_of(kind)) != tuple(data.get(f"{kind}_seeds") or ()) for kind in SEED_SETS):
        raise ValueError(f"cannot derive '{suite.name}' baselines: seed sets differ from '{source_suite.name}'")
    for t in suite.tasks:
        if t.name not in data["tasks"] or repr(t) != repr(source_suite.task(t.name)):
            raise ValueError(f"cannot derive '{suite.name}' baselines: task '{t.name}' differs from '{source_suite.name}'")
    out = dict(data)
    out["suite"] = suite.name
    out["suite_digest"] = suite_digest(suite)
    out["derived_from"] = source_suite.name
    out["tasks"] = {t.name: data["tasks"][t.name] for t in suite.tasks}
    return add_statistics(out, data.get("rho") or RHO)


def _add_wd_runs(
    data: dict, infos: Sequence[TaskInfo], lr0: float, seeds_used: Sequence[int], weight_decays: Sequence[float], ex: Any
) -> None:
    """AdamW at its chosen lr of every horizon, with each nonzero weight decay, on every seed."""
    from optforge.evaluators.train import eval_points

    wds = sorted({float(w) for w in weight_decays if float(w) > 0})
    specs = []
    for t in infos:
        rec = data["tasks"][t.name]["adamw"]
        rec["runs"] = [r for r in rec["runs"] if run_wd(r) == 0]
        for horizon, h in rec["chosen"].items():
            if h is None:
                continue
            n = int(horizon)
            specs += [run_spec(t, int(h), lr0, s, n, n, eval_points, wd) for wd in wds for s in seeds_used]
    by_run: dict[tuple[str, int, float], list[RunOutcome]] = {}
    for r in ex(specs) if specs else []:
        by_run.setdefault((r.spec.task, r.spec.horizon, r.spec.weight_decay), []).append(r)
    for (task, _, wd), runs in sorted(by_run.items()):
        data["tasks"][task]["adamw"]["runs"].append({**_outcomes_record(runs), "wd": wd})
    data["weight_decays"] = [0.0, *wds]


def add_weight_decay(
    data: dict, suite_name: str, weight_decays: Sequence[float] = WD_GRID, *, workers: int = 2, limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Give existing baselines (same suite version) AdamW's weight-decay runs, replacing any before."""
    from optforge import seeds

    suite, infos = _same_version(data, suite_name)
    seeds_used = [int(s) for s in data["seeds"]]
    horizons = sum(len(data["tasks"][t.name]["adamw"]["chosen"]) for t in infos)
    tally = _Tally(horizons * len(seeds_used) * len([w for w in weight_decays if w > 0]), progress)
    ex = _executor("adamw", suite_name, suite, limits, workers, tally)
    t0 = time.time()
    _add_wd_runs(data, infos, seeds.load("adamw").lr, seeds_used, weight_decays, ex)
    cost = data.setdefault("cost", {})
    cost["weight_decay"] = {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(ex.cpu_s, 1), "runs": tally.done}
    return data


def add_seeds(
    data: dict, suite_name: str, seeds: Sequence[int] | None = None, *, workers: int = 2, limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Give an existing build AdamW's runs on more seeds, without re-running a seed it has.

    Every stored AdamW arm (lr point, horizon and weight decay: the build's grid with its extensions,
    its longer horizons and its weight-decay runs) is run on each new seed, with the very RunSpec of
    the stored seeds, and the curves join that arm's record. `seeds` default to the suite's seeds the
    build lacks (selection, report and search). The build may be for an older suite version when its
    tasks and training loop are unchanged (same `suite_digest`: a version bumped for its seed sets);
    the file then takes the suite's version and seed sets. The cost is appended to `cost["seeds"]`.
    Raises BaselineError when the tasks or the loop changed (rebuild instead).
    """
    from optforge.evaluators.protocol import RunSpec
    from optforge.evaluators.tasks import get_suite

    suite = get_suite(suite_name)
    if data.get("suite_digest") != suite_digest(suite):
        raise BaselineError(
            f"the tasks or training loop of suite '{suite.name}' changed since its baselines were built, so runs on "
            f"new seeds would not match the stored ones; rebuild: `optforge baselines --suite {suite.name} --rebuild`"
        )
    have = {int(s) for s in data["seeds"]}
    new = [s for s in dict.fromkeys(int(x) for x in (suite.all_seeds if seeds is None else seeds)) if s not in have]
    specs = []
    for task in suite.task_names:
        for rec in data["tasks"][task]["adamw"]["runs"]:
            steps = tuple(int(x) for x in rec["steps"])
            specs += [RunSpec(task, int(rec.get("h", 0)), float(rec["lr"]), s, steps[-1], int(rec["horizon"]), steps,
                              run_wd(rec)) for s in new]
    tally = _Tally(len(specs), progress)
    ex = _executor("adamw", suite_name, suite, limits, workers, tally)
    t0 = time.time()
    for r in ex(specs) if specs else []:
        rec = next(x for x in data["tasks"][r.spec.task]["adamw"]["runs"]
                   if int(x.get("h", 0)) == r.spec.h and int(x["horizon"]) == r.spec.horizon
                   and run_wd(x) == r.spec.weight_decay)
        rec["val"][str(r.spec.seed)] = [v if math.isfinite(v) else None for v in r.val]
        rec["diverged"][str(r.spec.seed)] = r.diverged
    if new:
        data.setdefault("cost", {}).setdefault("seeds", []).append({
            "seeds": new, "runs": tally.done, "cpu_seconds": round(ex.cpu_s, 1),
            "wall_seconds": round(time.time() - t0, 1)})
    data["seeds"] = sorted(have | set(new))
    data["suite_version"] = suite.version
    for kind in SEED_SETS:
        data[f"{kind}_seeds"] = list(suite.seeds_of(kind))
    return add_statistics(data, data.get("rho") or RHO)


def _tuning_delta(tt: TaskTuning, n: int, rho: float = RHO) -> float:
    """delta of a task from AdamW's full-length runs in a tuning (the arm with the best mean loss)."""
    h = pick(tt.full, 0.0)
    runs = [r for r in tt.full.get(h, []) if not r.diverged]
    if not runs:
        return 0.0
    best = min(running_min(mean_curve([r.val for r in runs])))
    return resolution(best, [min(running_min(r.val)) for r in runs], rho, n)


def _tune_reference(result: dict, suite: Any, infos: Sequence[TaskInfo], ref: str, lr0: float, ex: Any,
                    deltas: Mapping[str, float] | None = None) -> None:
    from optforge.evaluators.train import eval_points

    if deltas is None:
        payload = payload_from(result)
        deltas = {t.name: task_delta(payload, t.name, len(suite.selection_seeds)) for t in infos}
    cfg = ProtocolConfig(grid=REFERENCE_GRID, halving=False, max_extensions=2)
    tn = tune(infos, lr0, suite.selection_seeds, ex, eval_points, cfg, fresh_seeds=suite.report_seeds, deltas=deltas)
    for t in infos:
        tt = tn[t.name]
        result["tasks"][t.name].setdefault("references", {})[ref] = {
            "lr0": lr0,
            "chosen": tt.chosen,
            "runs": _runs_record(tt),
            "reported": _outcomes_record(tt.reported),
        }


def add_references(
    data: dict, suite_name: str, references: Sequence[str], *, workers: int = 2, limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Tune more reference seeds into existing baselines (same suite version) and redo the table."""
    from optforge import seeds

    suite, infos = _same_version(data, suite_name)
    tally = _Tally(len(infos) * (len(REFERENCE_GRID) * len(suite.selection_seeds) + len(suite.report_seeds)) * len(references),
                   progress)
    t0, cpu = time.time(), 0.0
    for ref in references:
        ex = _executor(ref, suite_name, suite, limits, workers, tally)
        _tune_reference(data, suite, infos, ref, seeds.load(ref).lr, ex)
        cpu += ex.cpu_s
    cost = data.setdefault("cost", {})
    cost["references"] = {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu, 1), "runs": tally.done}
    return add_statistics(data, data.get("rho") or RHO)


def _scored_run(data: Mapping[str, Any], task: str, ref: str) -> tuple[dict | None, bool]:
    """(the run record to score on the report seeds, whether selection failed)."""
    t = data["tasks"][task]
    sel = [str(s) for s in data["selection_seeds"]]
    if ref != "adamw":
        rec = t["references"].get(ref)
        if not rec:
            return None, True
        return rec.get("reported") or None, False
    runs = [r for r in _runs_at(t, t["T"]) if all(s in r["val"] for s in sel)]
    if not runs:
        return None, True
    res = t.get("resolution") or task_resolution(t, data.get("rho") or RHO)
    delta = resolution(res["best_loss"], res["seed_bests"], res["rho"], len(sel)) if res["best_loss"] is not None else 0.0
    by_h = {i: _outcomes(r, [int(x) for x in sel]) for i, r in enumerate(runs)}
    best = runs[pick(by_h, delta)]
    failed = any(best["diverged"][x] for x in sel)
    return best, failed


def reference_table(data: Mapping[str, Any]) -> dict[str, dict]:
    """Each reference scored like a candidate on fresh seeds: lr picked on the selection seeds
    (the full grid), scored on the report seeds. {ref: {"tasks": {task: {...}}, **aggregate}}.
    """
    rep = [int(s) for s in data["report_seeds"]]
    payload = payload_from(data)
    refs = ["adamw"] + sorted({r for t in data["tasks"].values() for r in t.get("references", {})})
    table: dict[str, dict] = {}
    for ref in refs:
        scores, rows, hws = {}, {}, {}
        for name, t in data["tasks"].items():
            run, failed = _scored_run(data, name, ref)
            # a build with fewer seeds scores on the report seeds it has (all of them if it has none)
            have = [s for s in rep if run and str(s) in run["val"]] or ([int(s) for s in run["val"]] if run else rep)
            curves, _ = adamw_curves(payload, name, have)
            div = failed or run is None or any(run["diverged"].get(str(s), True) for s in have)
            val = [] if div else mean_curve([[math.inf if v is None else v for v in run["val"][str(s)]] for s in have])
            ts = task_score(run["steps"] if run else [], val, curves, int(t["T"]), diverged=div,
                            delta=task_delta(payload, name, len(have)))
            scores[name] = ts.score
            hws[name] = half_width(task_sigma(payload, name), len(have))
            rows[name] = {
                "score": round(ts.score, 4),
                "hw": None if hws[name] is None else round(hws[name], 4),
                "lr": run["lr"] if run else None,
                "best_val": ts.best_val if math.isfinite(ts.best_val) else None,
                "adamw_val": ts.adamw_val if math.isfinite(ts.adamw_val) else None,
                "flags": list(ts.flags),
            }
        table[ref] = {"tasks": rows, **aggregate(scores, hws)}
    return table
