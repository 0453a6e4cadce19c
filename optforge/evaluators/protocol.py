"""The lr protocol every rule goes through, baselines included (docs/suites.md: "What every task
shares" and "Measured table of the four references").

- The only tuned hyperparameter is a multiplier on the rule's `LR`, on a half-decade grid: index `h`
  means `LR * 10**(h/2)`. The default grid is h in {-1, 0, 1}; a best value on an edge extends the
  grid one step that way, at most `max_extensions` times (all-diverged extends downwards).
  Candidates get 3 extensions, so the reachable range
  LR * 10**[-2, +2] covers the tuned AdamW baseline grid (1e-4..1e-1 around the AdamW seed's 1e-3);
  with 2 the AdamW seed could not reach AdamW's own best lr on tasks that want 1e-1. An extension
  costs only a screening round on the tasks that need it; baselines still get more trials.
- Common random numbers: a run is fully determined by (task, seed); every rule sees the same init
  and data order for a seed.
- Successive halving: every multiplier trains a ~T/3-step run on the first seed; the best `keep` then
  train the full T on every seed; the best mean curve wins. If that winner sits at the edge of the
  full-length runs, its neighbour runs at full length too (at most `climb` times, within the grid's
  reach; screened or not), so the pick is made by the criterion the baselines use: full-length runs.
  (Short screens favour large lrs where validation loss turns up late: on tiny_diabetes_mlp they kept
  3.2e-2 and 1e-1 and dropped AdamW's full-length best, 1e-2. They can also rank a larger lr below a
  smaller one that full length prefers: AdamW on logreg, linreg2d and quad_illcond, where the winner
  was then the largest lr tried and flagged `lr_edge_high` although the next lr up is worse.) So
  `at_edge` means the chosen lr is the largest (smallest) one run and the climb could not go further:
  the grid's reach, or the climb budget. The screen runs a complete schedule of
  T/3 steps (warmup, cosine, annealed), not a prefix of the T schedule: a prefix is still at peak lr
  and ranks large lrs last (measured: it dropped tuned AdamW's best lr on linreg2d and matfact).
- Fresh seeds: the multiplier is picked on the selection seeds, then re-run on fresh seeds, which
  alone are scored (so picking among noisy trials cannot inflate the score).
- One rule picks among arms (lrs, weight decays; the baselines' `chosen` lr too), `pick`: among
  arms whose best mean loss is within the task's resolution delta of the best, the one that reaches
  best + delta in the fewest steps. Differences below delta are float noise, so they must not decide.
- Divergence stops a run at once (inside the training loop); a diverged run ranks last.
- Reused lr (rollouts with reuse_lr): a task given a fixed multiplier is not tuned; it runs at that
  multiplier, full length, on the scored seeds only.
- Weight decay (held-out stage only): with a `wd_grid`, each nonzero decoupled weight
  decay is tried at the chosen lr on the selection seeds, full length; the best mean curve (wd 0
  included) is the one re-run on the fresh seeds. The baselines give AdamW the same grid.

`tune` holds the logic and takes an `execute(specs) -> outcomes` callable, so the same code drives
sandboxed candidates and baseline builds. Each phase is one `execute` call over all tasks, so a
candidate needs few sandbox round trips.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from optforge.evaluators.run_records import Execute, RunOutcome, RunSpec, TaskInfo
from optforge.evaluators.scoring import mean_curve, running_min, steps_to_reach

__all__ = [
    "Execute", "ProtocolConfig", "RunOutcome", "RunSpec", "TaskInfo", "TaskTuning", "grid_index", "multiplier",
    "next_extension", "pick", "run_spec", "tune",
]

log = logging.getLogger(__name__)


def multiplier(h: int) -> float:
    """The lr multiplier of half-decade grid index `h`."""
    return 10.0 ** (h / 2.0)


def grid_index(m: float) -> int:
    """The half-decade grid index `h` with `multiplier(h) == m` (to 1e-6 relative).

    Raises ValueError for a multiplier that is not positive, not finite, or off the grid: every
    multiplier the protocol picks is on it (`task_rows[task]["lr_mult"]` of a result).
    """
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 0:
        raise ValueError(f"lr multiplier {m!r} must be a positive finite number")
    h = round(2.0 * math.log10(m))
    if not math.isclose(multiplier(h), m, rel_tol=1e-6):
        raise ValueError(
            f"lr multiplier {m!r} is not on the half-decade grid 10**(h/2) (nearest: {multiplier(h):.6g}); "
            "reuse the 'lr_mult' of a previous result's task row"
        )
    return h


@dataclass(frozen=True)
class ProtocolConfig:
    """How hard to tune. The defaults are the candidate protocol; baselines widen the grid."""

    grid: tuple[int, ...] = (-1, 0, 1)  # half-decade indices around LR
    max_extensions: int = 3  # edge extensions of the grid, in total
    halving: bool = True  # screen on ~1/3 T and one seed before the full runs
    screen_fraction: float = 1.0 / 3.0
    keep: int = 2  # multipliers promoted from the screen to the full runs
    climb: int = 2  # full-length neighbour steps when the full-length best is an edge of those runs
    horizon_factor: int = 1  # the full runs last horizon_factor * T (baselines run to 4T)

    def __post_init__(self) -> None:
        if not self.grid or len(set(self.grid)) != len(self.grid):
            raise ValueError(f"grid={self.grid!r} must be a non-empty tuple of distinct ints")
        if self.max_extensions < 0:
            raise ValueError(f"max_extensions={self.max_extensions!r} must be >= 0")
        if not 0.0 < self.screen_fraction <= 1.0:
            raise ValueError(f"screen_fraction={self.screen_fraction!r} must be in (0, 1]")
        if self.climb < 0:
            raise ValueError(f"climb={self.climb!r} must be >= 0")
        if self.keep < 1:
            raise ValueError(f"keep={self.keep!r} must be >= 1")
        if self.horizon_factor < 1:
            raise ValueError(f"horizon_factor={self.horizon_factor!r} must be >= 1")


@dataclass
class TaskTuning:
    """The protocol's record for one task: what was tried and what was picked."""

    task: TaskInfo
    horizon: int
    screen: dict[int, float] = field(default_factory=dict)  # h -> best val (inf: diverged)
    screen_runs: dict[int, RunOutcome] = field(default_factory=dict)
    full: dict[int, list[RunOutcome]] = field(default_factory=dict)  # h -> one run per selection seed
    chosen: int | None = None
    wd: float = 0.0  # the chosen decoupled weight decay (0 unless a wd grid was tried)
    wd_runs: dict[float, list[RunOutcome]] = field(default_factory=dict)  # wd -> runs at `chosen`
    reported: list[RunOutcome] = field(default_factory=list)  # the scored runs (fresh seeds or full[chosen])
    extensions: int = 0
    delta: float = 0.0  # the task's loss resolution: arms closer than this are ties (`pick`)

    @property
    def at_edge(self) -> str | None:
        """'low'/'high' if the chosen multiplier is still on the edge of the (extended) grid."""
        tried = sorted(set(self.screen) | set(self.full))
        if self.chosen is None or len(tried) < 2:
            return None
        if self.chosen == tried[0]:
            return "low"
        if self.chosen == tried[-1]:
            return "high"
        return None

    @property
    def all_diverged(self) -> bool:
        return not self.reported or all(r.diverged for r in self.reported)


def next_extension(scores: Mapping[int, float], base: Sequence[int], max_extensions: int) -> int | None:
    """The grid index to add so the best becomes interior, or None (best interior, or bound reached).

    Every multiplier diverging (all inf) extends towards smaller lrs.
    """
    if not scores:
        return None
    lo, hi = min(base) - max_extensions, max(base) + max_extensions
    tried = sorted(scores)
    finite = {h: v for h, v in scores.items() if math.isfinite(v)}
    if not finite:
        cand = tried[0] - 1
    else:
        best = min(finite, key=lambda h: (finite[h], h))
        if best == tried[0]:
            cand = best - 1
        elif best == tried[-1]:
            cand = best + 1
        else:
            return None
    return cand if lo <= cand <= hi and cand not in scores else None


def _mean_best(runs: Sequence[RunOutcome]) -> float:
    if not runs or any(r.diverged for r in runs):
        return math.inf
    return min(running_min(mean_curve([r.val for r in runs])))


def pick(arms: Mapping[Any, Sequence[RunOutcome]], delta: float = 0.0) -> Any:
    """The arm to keep: among arms within `delta` of the best mean loss, the fewest steps to reach
    best + delta (ties: the smaller key). None when there are no arms; all diverged: the smallest key."""
    if not arms:
        return None
    best = {k: _mean_best(runs) for k, runs in arms.items()}
    top = min(best.values())
    if not math.isfinite(top):
        return min(arms)
    target = top + max(0.0, float(delta))

    def reach(k: Any) -> float:
        runs = arms[k]
        s = steps_to_reach(list(runs[0].spec.eval_steps[: len(runs[0].val)]), mean_curve([r.val for r in runs]), target)
        return math.inf if s is None else s

    near = [k for k, v in best.items() if v <= target]
    return min(near, key=lambda k: (reach(k), k))


def _full_best(tt: TaskTuning) -> int | None:
    return pick(tt.full, tt.delta)


def _climb_step(tt: TaskTuning, lo: int, hi: int) -> int | None:
    """The neighbour to run at full length when the full-length best is an edge of the full-length
    runs (towards the outside), or None. The neighbour may be unscreened (the screen stopped extending
    because its own best lay inside): a chosen lr at the edge of every lr tried is then measured, not
    assumed, up to the grid's reach [lo, hi]. A neighbour whose screen diverged is not run."""
    best = _full_best(tt)
    if best is None or not math.isfinite(_mean_best(tt.full[best])):
        return None
    run = sorted(tt.full)
    for h, edge in ((best - 1, run[0]), (best + 1, run[-1])):
        if best == edge and h not in tt.full and lo <= h <= hi and math.isfinite(tt.screen.get(h, 0.0)):
            return h
    return None


def run_spec(
    t: TaskInfo, h: int, lr0: float, seed: int, steps: int, horizon: int, points: Callable, weight_decay: float = 0.0
) -> RunSpec:
    """The run of task `t` at grid index `h`, evaluated at `points(horizon)` up to `steps`."""
    eval_steps = [s for s in points(horizon) if s <= steps]
    if not eval_steps or eval_steps[-1] != steps:
        eval_steps.append(steps)
    return RunSpec(t.name, h, lr0 * multiplier(h), seed, steps, horizon, tuple(eval_steps), float(weight_decay))


def tune(
    tasks: Sequence[TaskInfo],
    lr0: float,
    seeds: Sequence[int],
    execute: Execute,
    eval_points: Callable[[int], list[int]],
    config: ProtocolConfig = ProtocolConfig(),
    *,
    fresh_seeds: Sequence[int] = (),
    grids: Mapping[str, Sequence[int]] | None = None,
    wd_grid: Sequence[float] = (),
    deltas: Mapping[str, float] | None = None,
    fixed_multipliers: Mapping[str, float] | None = None,
) -> dict[str, TaskTuning]:
    """Run the protocol for every task; `grids` overrides the starting grid per task; `wd_grid`
    lists the weight decays to try at the chosen lr (0 is always the first arm); `deltas` gives each
    task's loss resolution for `pick` (default 0: the best mean loss decides).

    `fixed_multipliers` (reuse_lr) gives tasks an lr multiplier on the grid (`grid_index`): those are
    not tuned, and run once at full length at that multiplier on the scored seeds (`fresh_seeds` if
    given, else `seeds`). They take no weight decay: a wd_grid with fixed tasks raises ValueError.

    Returns per task the tried multipliers, the full-length runs and the chosen multiplier; the
    scored runs are the full runs at the chosen multiplier, or re-runs on `fresh_seeds` if given.
    """
    if not seeds:
        raise ValueError("tune needs at least one selection seed")
    fixed = {name: grid_index(m) for name, m in (fixed_multipliers or {}).items()}
    if fixed and any(w > 0 for w in wd_grid):
        raise ValueError("fixed lr multipliers take no weight-decay tuning; pass an empty wd_grid")
    out = {t.name: TaskTuning(t, t.steps * config.horizon_factor, delta=float((deltas or {}).get(t.name, 0.0)))
           for t in tasks}
    for name, h in fixed.items():
        if name in out:
            out[name].chosen = h
    all_tasks, tasks = tasks, [t for t in tasks if t.name not in fixed]
    base = {t.name: tuple(grids[t.name]) if grids and t.name in grids else config.grid for t in tasks}

    def phase(specs: list[RunSpec]) -> list[RunOutcome]:
        if not specs:
            return []
        results = execute(specs)
        if len(results) != len(specs):
            raise RuntimeError(f"execute returned {len(results)} outcomes for {len(specs)} runs")
        return results

    def screen_or_full(hs: Mapping[str, Sequence[int]]) -> None:
        specs = []
        for t in tasks:
            tt = out[t.name]
            for h in hs.get(t.name, ()):
                if config.halving:
                    n = max(1, round(tt.horizon * config.screen_fraction))
                    specs.append(run_spec(t, h, lr0, seeds[0], n, n, eval_points))
                else:
                    specs += [run_spec(t, h, lr0, s, tt.horizon, tt.horizon, eval_points) for s in seeds]
        by_task: dict[tuple[str, int], list[RunOutcome]] = {}
        for r in phase(specs):
            by_task.setdefault((r.spec.task, r.spec.h), []).append(r)
        for (name, h), runs in by_task.items():
            tt = out[name]
            if config.halving:
                tt.screen_runs[h] = runs[0]
                tt.screen[h] = runs[0].best()
            else:
                tt.full[h] = runs
                tt.screen[h] = _mean_best(runs)

    screen_or_full({t.name: base[t.name] for t in tasks})
    for _ in range(config.max_extensions):
        todo = {}
        for t in tasks:
            h = next_extension(out[t.name].screen, base[t.name], config.max_extensions)
            if h is not None:
                todo[t.name] = [h]
                out[t.name].extensions += 1
        if not todo:
            break
        screen_or_full(todo)

    if config.halving:
        specs = []
        for t in tasks:
            tt = out[t.name]
            ranked = sorted(tt.screen, key=lambda h: (tt.screen[h], h))
            keep = [h for h in ranked[: config.keep] if math.isfinite(tt.screen[h])] or ranked[:1]
            specs += [run_spec(t, h, lr0, s, tt.horizon, tt.horizon, eval_points) for h in keep for s in seeds]
        for r in phase(specs):
            out[r.spec.task].full.setdefault(r.spec.h, []).append(r)
        for _ in range(config.climb):
            specs = []
            for t in tasks:
                reach = (min(base[t.name]) - config.max_extensions, max(base[t.name]) + config.max_extensions)
                h = _climb_step(out[t.name], *reach)
                if h is not None:
                    specs += [run_spec(t, h, lr0, s, out[t.name].horizon, out[t.name].horizon, eval_points) for s in seeds]
            if not specs:
                break
            for r in phase(specs):
                out[r.spec.task].full.setdefault(r.spec.h, []).append(r)

    for t in tasks:
        tt = out[t.name]
        tt.chosen = _full_best(tt)
        tt.reported = list(tt.full.get(tt.chosen, [])) if tt.chosen is not None else []

    wds = sorted({float(w) for w in wd_grid if w > 0})
    if wds:
        specs = []
        for t in tasks:
            tt = out[t.name]
            if tt.chosen is not None and math.isfinite(_mean_best(tt.reported)):
                specs += [run_spec(t, tt.chosen, lr0, s, tt.horizon, tt.horizon, eval_points, wd) for wd in wds for s in seeds]
        for r in phase(specs):
            out[r.spec.task].wd_runs.setdefault(r.spec.weight_decay, []).append(r)
        for t in tasks:
            tt = out[t.name]
            if tt.wd_runs:
                arms = {0.0: tt.reported, **tt.wd_runs}
                tt.wd = pick(arms, tt.delta)
                tt.reported = list(arms[tt.wd])

    # the scored runs still to do, in one phase: tuned tasks on fresh seeds, fixed tasks on the scored seeds
    specs = []
    for t in all_tasks:
        tt = out[t.name]
        if tt.chosen is not None and (fresh_seeds or t.name in fixed):
            specs += [run_spec(t, tt.chosen, lr0, s, tt.horizon, tt.horizon, eval_points, tt.wd)
                      for s in (fresh_seeds or seeds)]
    scored: dict[str, list[RunOutcome]] = {}
    for r in phase(specs):
        scored.setdefault(r.spec.task, []).append(r)
    for name, runs in scored.items():
        out[name].reported = runs
        if name in fixed and not fresh_seeds:
            out[name].full[out[name].chosen] = runs
    for tt in out.values():
        log.debug("task %s: tried %s, chose h=%s wd=%g", tt.task.name, tt.screen, tt.chosen, tt.wd)
    return out
