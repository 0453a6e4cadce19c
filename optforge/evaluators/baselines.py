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

from optforge.evaluators.protocol import ProtocolConfig, RunOutcome, TaskInfo, TaskTuning, run_spec, tune
from optforge.evaluators.scoring import BaselineCurve, aggregate, mean_curve, task_score

log = logging.getLogger(__name__)

FORMAT = 1
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
        errors.append(f"baseline format {data.get('format')!r}, this optforge reads {FORMAT}")
    if data.get("suite_version") != suite.version:
        errors.append(
            f"baselines were built for suite '{suite.name}' version {data.get('suite_version')!r}, "
            f"the suite is now version {suite.version!r}; rebuild: `optforge baselines --suite {suite.name} --rebuild`"
        )
    missing = sorted(set(suite.task_names) - set(data.get("tasks", {})))
    if missing:
        errors.append(f"baselines lack tasks {missing}; rebuild: `optforge baselines --suite {suite.name} --rebuild`")
    if data.get("suite_digest") and data.get("suite_digest") != suite_digest(suite):
        warnings.append(
            f"the tasks or training loop of suite '{suite.name}' changed since its baselines were built "
            f"(same version {suite.version!r}); bump the suite version and rebuild"
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
        }
    keys = ("format", "suite", "suite_version", "torch", "seeds", "weight_decays")
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


def adamw_seed_scores(payload: Mapping[str, Any], task: str) -> list[float]:
    """Seed-to-seed noise of the score: each seed of tuned AdamW (best lr at T) scored alone against
    AdamW's mean curves over all seeds. Their spread is the noise floor a real gain must exceed."""
    t = payload["tasks"][task]
    seeds = sorted({int(s) for r in t["adamw"]["runs"] for s in r["val"]})
    curves, _ = adamw_curves(payload, task, seeds)
    at_t = [r for r in t["adamw"]["runs"]
            if int(r["horizon"]) == int(t["T"]) and run_wd(r) == 0 and not any(r["diverged"].values())]
    if not at_t:
        return []
    best = min(at_t, key=lambda r: min(mean_curve([r["val"][str(s)] for s in seeds])))
    return [task_score(best["steps"], best["val"][str(s)], curves, int(t["T"])).score for s in seeds]


def seed_spread(payload: Mapping[str, Any], task: str) -> float:
    """Standard deviation of `adamw_seed_scores` (0 with fewer than two seeds)."""
    xs = adamw_seed_scores(payload, task)
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


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

    `seeds_used` defaults to every selection and report seed (full common random numbers for both
    seed sets); fewer seeds make a cheaper build, and evaluations on seeds it lacks fall back to the
    ones it has (flagged `baseline_seeds_differ`). `horizons`: the longer AdamW horizons, in units of T.
    """
    from optforge import seeds
    from optforge.evaluators.tasks import get_suite
    from optforge.evaluators.train import eval_points

    if "adamw" not in references:
        raise ValueError("references must include 'adamw': every score is measured against it")
    suite = get_suite(suite_name)
    infos = [TaskInfo(t.name, t.family, int(t.steps)) for t in suite.tasks]
    all_seeds = tuple(dict.fromkeys(tuple(suite.selection_seeds) + tuple(suite.report_seeds)))
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
    result: dict[str, Any] = {
        "format": FORMAT,
        "suite": suite.name,
        "suite_version": suite.version,
        "suite_digest": suite_digest(suite),
        "torch": torch_version(),
        "seeds": list(all_seeds),
        "horizons": [1, *horizons],
        "selection_seeds": list(suite.selection_seeds),
        "report_seeds": list(suite.report_seeds),
        "tasks": {t.name: {"T": t.steps, "family": t.family, "references": {}} for t in infos},
    }
    for ref in references:
        lr0 = seeds.load(ref).lr
        ex = _executor(ref, suite_name, suite, limits, workers, tally)
        if ref == "adamw":
            tunings = [tune(infos, lr0, all_seeds, ex, eval_points, ProtocolConfig(grid=ADAMW_GRID, halving=False, max_extensions=2))]
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
            _tune_reference(result, suite, infos, ref, lr0, ex)
        cpu += ex.cpu_s
    result["cost"] = {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu, 1), "runs": tally.done}
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        result["table"] = reference_table(result)
    except Exception:  # noqa: BLE001 - the measured curves are worth keeping even if the table breaks
        log.exception("could not score the references of suite %s; the curves are kept", suite.name)
    return result


def derive(data: Mapping[str, Any], suite: Any, source_suite: Any) -> dict:
    """Baselines for `suite` cut from those of `source_suite`, when every task of `suite` is the very
    same task (equal definitions) there, with the same version and seeds. `train_quick` is a subset
    of `train`, so it needs no runs of its own."""
    if suite.version != data.get("suite_version") or source_suite.version != data.get("suite_version"):
        raise ValueError(f"cannot derive '{suite.name}' baselines: versions differ")
    if tuple(suite.selection_seeds) != tuple(data["selection_seeds"]) or tuple(suite.report_seeds) != tuple(
        data["report_seeds"]
    ):
        raise ValueError(f"cannot derive '{suite.name}' baselines: seeds differ")
    for t in suite.tasks:
        if t.name not in data["tasks"] or repr(t) != repr(source_suite.task(t.name)):
            raise ValueError(f"cannot derive '{suite.name}' baselines: task '{t.name}' differs from '{source_suite.name}'")
    out = dict(data)
    out["suite"] = suite.name
    out["suite_digest"] = suite_digest(suite)
    out["derived_from"] = source_suite.name
    out["tasks"] = {t.name: data["tasks"][t.name] for t in suite.tasks}
    out["table"] = reference_table(out)
    return out


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


def _tune_reference(result: dict, suite: Any, infos: Sequence[TaskInfo], ref: str, lr0: float, ex: Any) -> None:
    from optforge.evaluators.train import eval_points

    cfg = ProtocolConfig(grid=REFERENCE_GRID, halving=False, max_extensions=2)
    tn = tune(infos, lr0, suite.selection_seeds, ex, eval_points, cfg, fresh_seeds=suite.report_seeds)
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
    data["table"] = reference_table(data)
    return data


def _scored_run(data: Mapping[str, Any], task: str, ref: str) -> tuple[dict | None, bool]:
    """(the run record to score on the report seeds, whether selection failed)."""
    t = data["tasks"][task]
    sel = [str(s) for s in data["selection_seeds"]]
    if ref != "adamw":
        rec = t["references"].get(ref)
        if not rec:
            return None, True
        return rec.get("reported") or None, False
    runs = [r for r in t["adamw"]["runs"] if int(r["horizon"]) == int(t["T"]) and run_wd(r) == 0]

    def sel_best(r: dict) -> float:
        if any(r["diverged"][s] for s in sel):
            return math.inf
        return min(mean_curve([r["val"][s] for s in sel]))

    best = min(runs, key=sel_best)
    return best, not math.isfinite(sel_best(best))


def reference_table(data: Mapping[str, Any]) -> dict[str, dict]:
    """Each reference scored like a candidate on fresh seeds: lr picked on the selection seeds
    (the full grid), scored on the report seeds. {ref: {"tasks": {task: {...}}, **aggregate}}.
    """
    rep = [int(s) for s in data["report_seeds"]]
    payload = payload_from(data)
    refs = ["adamw"] + sorted({r for t in data["tasks"].values() for r in t.get("references", {})})
    table: dict[str, dict] = {}
    for ref in refs:
        scores, rows = {}, {}
        for name, t in data["tasks"].items():
            run, failed = _scored_run(data, name, ref)
            # a build with fewer seeds scores on the report seeds it has (all of them if it has none)
            have = [s for s in rep if run and str(s) in run["val"]] or ([int(s) for s in run["val"]] if run else rep)
            curves, _ = adamw_curves(payload, name, have)
            div = failed or run is None or any(run["diverged"].get(str(s), True) for s in have)
            val = [] if div else mean_curve([[math.inf if v is None else v for v in run["val"][str(s)]] for s in have])
            ts = task_score(run["steps"] if run else [], val, curves, int(t["T"]), diverged=div)
            scores[name] = ts.score
            rows[name] = {
                "score": round(ts.score, 4),
                "lr": run["lr"] if run else None,
                "best_val": ts.best_val if math.isfinite(ts.best_val) else None,
                "adamw_val": ts.adamw_val if math.isfinite(ts.adamw_val) else None,
                "flags": list(ts.flags),
            }
        table[ref] = {"tasks": rows, **aggregate(scores)}
    return table
