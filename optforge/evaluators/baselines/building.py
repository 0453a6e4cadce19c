"""Measuring baselines from scratch through the same protocol and sandboxed job as any candidate.

- AdamW: 7-point half-decade grid 1e-4..1e-1 on every seed of the suite (selection, report and
  search), horizon T; then horizons 2T and 4T on 3 points around the previous horizon's best. Each
  grid extends at an edge (at most twice), as for candidates.
- SGD-momentum, Lion, Muon: 5 points around their LR (+ up to 2 extensions) on the selection seeds,
  full T, then the chosen lr on the report seeds: at least as many lr trials and seeds as a candidate
  gets (tuning parity), scored exactly like a candidate on fresh seeds.
- Weight decay (for stages that tune it, the held-out one by default): at AdamW's chosen lr of every
  horizon, each decoupled weight decay of `WD_GRID` on every seed. Those curves join AdamW's only when
  the evaluation tunes weight decay too, with the same grid.
- `derive` cuts a suite's baselines from a suite that holds its tasks unchanged (train_quick from train).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Mapping, Sequence

from optforge.evaluators.baselines.files import FORMAT, machine_info, payload_from, suite_digest, torch_version
from optforge.evaluators.baselines.lookup import RHO, run_wd, task_delta
from optforge.evaluators.baselines.statistics import add_statistics, rechoose
from optforge.evaluators.protocol import ProtocolConfig, RunOutcome, RunSpec, TaskInfo, pick, run_spec, tune
from optforge.evaluators.scoring import mean_curve, resolution, running_min
from optforge.evaluators.tasks.base import SEED_SETS

log = logging.getLogger(__name__)


REFERENCES = ("adamw", "sgd", "lion", "muon")
ADAMW_GRID = tuple(range(-2, 5))  # around LR=1e-3: 1e-4, 3.2e-4, ..., 1e-1
REFERENCE_GRID = (-2, -1, 0, 1, 2)
HORIZONS = (2, 4)
WD_GRID = (0.01, 0.1, 1.0)  # nonzero decoupled weight decays (0 is always an arm): a decade grid, since
# what matters is lr * wd * steps, and tuned lrs here span 1e-3..1e-1


def _runs_record(tt: TaskTuning) -> list[dict]:
    """Every full-length arm of a tuning, one record each (per seed: curve and divergence)."""
    return [{**_outcomes_record(tt.full[h]), "h": h, "horizon": tt.horizon} for h in sorted(tt.full)]


def _outcomes_record(runs: Sequence[RunOutcome]) -> dict:
    """One arm's runs (same lr and horizon, one per seed) as a stored record; {} for none."""
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


class Tally:
    """Counts finished runs and reports (done, planned) to a progress callback."""

    def __init__(self, planned: int, report: Callable[[int, int], None] | None) -> None:
        self.planned, self.report, self.done = planned, report, 0

    def __call__(self, k: int) -> None:
        self.done += k
        if self.report:
            self.report(self.done, max(self.planned, self.done))


def sandbox_executor(ref: str, suite_name: str, suite: Any, limits: Any, workers: int, tally: Tally) -> Any:
    """The sandboxed executor that trains seed `ref` on the suite's tasks (failures isolated per run)."""
    from optforge import sandbox, seeds
    from optforge.evaluators.validate import SandboxExecutor

    return SandboxExecutor(
        seeds.source(ref), suite_name, {t.name: t for t in suite.tasks},
        limits or sandbox.Limits(timeout_s=3600.0, memory_mb=4096), sandbox.RULE_POLICY,
        workers=workers, chunks_per_worker=3, progress=tally, name=ref, isolate_failures=True,
    )


def failed_runs(failed: Sequence[str]) -> dict:
    """The cost entry's record of runs that failed in the sandbox twice (stored as diverged at step 0:
    the machine, not the rule, failed), so that `optforge baselines` can name them; {} when none did."""
    if failed:
        log.warning("%d runs failed in the sandbox and are stored as diverged, e.g. %s", len(failed), failed[0])
    return {"failed_runs": list(failed)} if failed else {}


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
    tally = Tally(planned, progress)
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
    failed: list[str] = []
    for ref in references:
        lr0 = seeds.load(ref).lr
        ex = sandbox_executor(ref, suite_name, suite, limits, workers, tally)
        if ref == "adamw":
            tunings = [tune(infos, lr0, all_seeds, ex, eval_points, ProtocolConfig(grid=ADAMW_GRID, halving=False, max_extensions=2))]
            sel = [s for s in suite.selection_seeds if s in all_seeds] or list(all_seeds)
            for tt in tunings[0].values():  # AdamW's arm and delta on the selection seeds only (lookup.chosen_run)
                on_sel = {h: [r for r in runs if r.spec.seed in sel] for h, runs in tt.full.items()}
                tt.delta = _tuning_delta(on_sel, len(sel))
                tt.chosen = pick(on_sel, tt.delta)
                deltas[tt.task.name] = tt.delta
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
            rechoose(result)  # every horizon's lr on the selection seeds, before weight decay runs at it
            add_wd_runs(result, wd_specs(result, infos, lr0, all_seeds, weight_decays), ex)
        else:
            tune_reference(result, suite, infos, ref, lr0, ex, deltas)
        cpu += ex.cpu_s
        failed += [f"{ref}: {f}" for f in ex.failed]
    result["cost"] = {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu, 1), "runs": tally.done,
                      **failed_runs(failed)}
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


def wd_specs(data: dict, infos: Sequence[TaskInfo], lr0: float, seeds_used: Sequence[int],
             weight_decays: Sequence[float]) -> list[RunSpec]:
    """The weight-decay runs a build lacks: AdamW at its chosen lr of every horizon, with each nonzero
    weight decay, on every seed, less the (horizon, lr, weight decay) arms stored already. Drops stored
    weight-decay runs of a weight decay outside the grid; those at other lrs (chosen on more seeds by an
    older build) stay as curves of AdamW."""
    from optforge.evaluators.train import eval_points

    wds = sorted({float(w) for w in weight_decays if float(w) > 0})
    specs = []
    for t in infos:
        rec = data["tasks"][t.name]["adamw"]
        rec["runs"] = [r for r in rec["runs"] if run_wd(r) == 0 or run_wd(r) in wds]
        have = {(int(r["horizon"]), r.get("h"), run_wd(r)) for r in rec["runs"] if run_wd(r) > 0}
        for horizon, h in rec["chosen"].items():
            if h is None:
                continue
            n = int(horizon)
            specs += [run_spec(t, int(h), lr0, s, n, n, eval_points, wd) for wd in wds for s in seeds_used
                      if (n, int(h), wd) not in have]
    data["weight_decays"] = [0.0, *wds]
    return specs


def add_wd_runs(data: dict, specs: Sequence[RunSpec], ex: Any) -> None:
    """Run `wd_specs` and store each (task, horizon, lr, weight decay) arm as one record."""
    by_run: dict[tuple[str, int, int, float], list[RunOutcome]] = {}
    for r in ex(list(specs)) if specs else []:
        by_run.setdefault((r.spec.task, r.spec.horizon, r.spec.h, r.spec.weight_decay), []).append(r)
    for (task, _, _, wd), runs in sorted(by_run.items()):
        data["tasks"][task]["adamw"]["runs"].append({**_outcomes_record(runs), "wd": wd})


def _tuning_delta(arms: Mapping[int, Sequence[RunOutcome]], n: int, rho: float = RHO) -> float:
    """delta of a task from AdamW's full-length runs (the arm with the best mean loss), for n seeds."""
    h = pick(arms, 0.0)
    runs = [r for r in arms.get(h, []) if not r.diverged]
    if not runs:
        return 0.0
    best = min(running_min(mean_curve([r.val for r in runs])))
    return resolution(best, [min(running_min(r.val)) for r in runs], rho, n)


def tune_reference(result: dict, suite: Any, infos: Sequence[TaskInfo], ref: str, lr0: float, ex: Any,
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
