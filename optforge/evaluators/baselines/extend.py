"""Growing an existing build without re-running what it has: AdamW on more seeds (`add_seeds`), AdamW's
weight-decay runs (`add_weight_decay`), more references (`add_references`). Each adds its measured cost
to the file's `cost`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

from optforge.evaluators.baselines.building import (
    REFERENCE_GRID, WD_GRID, Tally, add_wd_runs, failed_runs, sandbox_executor, tune_reference, wd_specs,
)
from optforge.evaluators.baselines.files import BaselineError, machine_info, suite_digest
from optforge.evaluators.baselines.lookup import RHO, run_wd
from optforge.evaluators.baselines.statistics import add_statistics
from optforge.evaluators.protocol import TaskInfo
from optforge.evaluators.tasks.base import SEED_SETS


def _same_version(data: Mapping[str, Any], suite_name: str) -> tuple[Any, list[TaskInfo]]:
    """The live suite and its tasks, after checking that stored `data` is for its version."""
    from optforge.evaluators.tasks import get_suite

    suite = get_suite(suite_name)
    if data.get("suite_version") != suite.version:
        raise BaselineError(f"baselines are for version {data.get('suite_version')!r}, suite is {suite.version!r}")
    return suite, [TaskInfo(t.name, t.family, int(t.steps)) for t in suite.tasks]


def add_seeds(
    data: dict, suite_name: str, seeds: Sequence[int] | None = None, *, workers: int = 2, limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Give an existing build AdamW's runs on more seeds, without re-running a seed it has.

    Every stored AdamW arm (lr point, horizon and weight decay: the build's grid with its extensions,
    its longer horizons and its weight-decay runs) is run on each new seed, with the very RunSpec of
    the stored seeds, and the curves join that arm's record. `seeds` default to the suite's seeds the
    build lacks (selection, report and search); a seed outside those sets is refused. The build may be for an older suite version when its
    tasks and training loop are unchanged (same `suite_digest`: a version bumped for its seed sets);
    the file then takes the suite's version and seed sets. The cost is appended to `cost["seeds"]`.
    Raises BaselineError when the tasks or the loop changed (rebuild instead) or a seed is not the suite's.
    """
    from optforge.evaluators.protocol import RunSpec
    from optforge.evaluators.tasks import get_suite

    suite = get_suite(suite_name)
    if data.get("suite_digest") != suite_digest(suite):
        raise BaselineError(
            f"the tasks or training loop of suite '{suite.name}' changed since its baselines were built, so runs on "
            f"new seeds would not match the stored ones; rebuild: `optforge baselines --suite {suite.name} --rebuild`"
        )
    stray = sorted({int(x) for x in seeds or ()} - set(suite.all_seeds))
    if stray:
        raise BaselineError(
            f"seeds {stray} are in none of suite '{suite.name}' seed sets (selection {list(suite.selection_seeds)}, "
            f"report {list(suite.report_seeds)}, search {list(suite.search_seeds)}); add them to the suite first (a new version)"
        )
    have = {int(s) for s in data["seeds"]}
    new = [s for s in dict.fromkeys(int(x) for x in (suite.all_seeds if seeds is None else seeds)) if s not in have]
    specs = []
    for task in suite.task_names:
        for rec in data["tasks"][task]["adamw"]["runs"]:
            steps = tuple(int(x) for x in rec["steps"])
            specs += [RunSpec(task, int(rec.get("h", 0)), float(rec["lr"]), s, steps[-1], int(rec["horizon"]), steps,
                              run_wd(rec)) for s in new]
    tally = Tally(len(specs), progress)
    ex = sandbox_executor("adamw", suite_name, suite, limits, workers, tally)
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
            "wall_seconds": round(time.time() - t0, 1), "machine": machine_info(), **failed_runs(ex.failed)})
    data["seeds"] = sorted(have | set(new))
    data["suite_version"] = suite.version
    for kind in SEED_SETS:
        data[f"{kind}_seeds"] = list(suite.seeds_of(kind))
    return add_statistics(data, data.get("rho") or RHO)


def add_weight_decay(
    data: dict, suite_name: str, weight_decays: Sequence[float] = WD_GRID, *, workers: int = 2, limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Give existing baselines (same suite version) AdamW's weight-decay runs at the chosen lr of every
    horizon, on every stored seed: only the arms the file lacks run (`building.wd_specs`)."""
    from optforge import seeds

    suite, infos = _same_version(data, suite_name)
    specs = wd_specs(data, infos, seeds.load("adamw").lr, [int(s) for s in data["seeds"]], weight_decays)
    tally = Tally(len(specs), progress)
    ex = sandbox_executor("adamw", suite_name, suite, limits, workers, tally)
    t0 = time.time()
    add_wd_runs(data, specs, ex)
    if specs:
        _add_cost(data, "weight_decay", {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(ex.cpu_s, 1),
                                         "runs": tally.done, "machine": machine_info(), **failed_runs(ex.failed)})
    return add_statistics(data, data.get("rho") or RHO)


def _add_cost(data: dict, key: str, part: dict) -> None:
    """Append a measured addition to `cost[key]` (a list; a single earlier record becomes its first item)."""
    cost = data.setdefault("cost", {})
    before = cost.get(key)
    cost[key] = ([before] if isinstance(before, dict) else list(before or [])) + [part]


def add_references(
    data: dict, suite_name: str, references: Sequence[str], *, workers: int = 2, limits: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Tune more reference seeds into existing baselines (same suite version) and redo the table."""
    from optforge import seeds

    suite, infos = _same_version(data, suite_name)
    tally = Tally(len(infos) * (len(REFERENCE_GRID) * len(suite.selection_seeds) + len(suite.report_seeds)) * len(references),
                   progress)
    t0, cpu, failed = time.time(), 0.0, []
    for ref in references:
        ex = sandbox_executor(ref, suite_name, suite, limits, workers, tally)
        tune_reference(data, suite, infos, ref, seeds.load(ref).lr, ex)
        cpu += ex.cpu_s
        failed += [f"{ref}: {f}" for f in ex.failed]
    _add_cost(data, "references", {"wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu, 1),
                                   "runs": tally.done, "machine": machine_info(), **failed_runs(failed)})
    return add_statistics(data, data.get("rho") or RHO)
