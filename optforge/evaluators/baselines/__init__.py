"""Tuned baselines: AdamW curves to 4T (what every score is measured against) and the references.

Computed once per suite version through the same protocol and sandboxed job as any candidate, and
committed for the shipped suites as `<suite>.json` in this folder (docs/suites.md). The modules:

- `files`: where a file lives, load/save, `check` against a live suite, the scoring `payload_from`;
- `lookup`: AdamW's curves, its arms picked on the selection seeds, paired per-seed scores, each task's delta and sigma;
- `statistics`: what a build derives without training (format 2: resolution, sigma, the table; `upgrade`);
- `building`: measuring a suite from scratch (`build`) or cutting one from another (`derive`);
- `extend`: growing a build (`add_seeds`, `add_weight_decay`, `add_references`);
- `verification`: whether the file holds on this machine (`verify`, the start-of-run check, `measure_rho`).

The names below are the public API; import them from `optforge.evaluators.baselines`.
"""

from optforge.evaluators.baselines.building import (
    ADAMW_GRID, HORIZONS, REFERENCE_GRID, REFERENCES, WD_GRID, build, derive,
)
from optforge.evaluators.baselines.extend import add_references, add_seeds, add_weight_decay
from optforge.evaluators.baselines.files import (
    COMMITTED_DIR, FORMAT, BaselineError, baseline_path, check, load, machine_info, payload_from, save, suite_digest,
    torch_version,
)
from optforge.evaluators.baselines.lookup import (
    RHO, adamw_curves, chosen_run, missing_wd_arms, paired_seed_scores, pick_seeds, run_wd, selected_runs, task_delta,
    task_resolution, task_sigma, weight_decay_grid,
)
from optforge.evaluators.baselines.statistics import add_statistics, measure_sigma, rechoose, reference_table, upgrade
from optforge.evaluators.baselines.verification import (
    CHECK_MODES, cpu_capabilities, measure_rho, rebuild_hint, set_measured_rho, verify, verify_for_run, verify_message,
)

__all__ = [
    "ADAMW_GRID", "CHECK_MODES", "COMMITTED_DIR", "FORMAT", "HORIZONS", "REFERENCES", "REFERENCE_GRID", "RHO",
    "WD_GRID", "BaselineError", "adamw_curves", "add_references", "add_seeds", "add_statistics", "add_weight_decay",
    "baseline_path", "build", "check", "chosen_run", "cpu_capabilities", "derive", "load", "machine_info",
    "measure_rho", "measure_sigma", "missing_wd_arms", "paired_seed_scores", "payload_from", "pick_seeds",
    "rebuild_hint", "rechoose", "reference_table", "run_wd", "save", "selected_runs", "set_measured_rho",
    "suite_digest", "task_delta", "task_resolution", "task_sigma", "torch_version", "upgrade", "verify",
    "verify_for_run", "verify_message", "weight_decay_grid",
]
