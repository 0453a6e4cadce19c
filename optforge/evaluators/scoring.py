"""Per-task scores against tuned AdamW, and their aggregates. Pure functions on curves.

Why steps-to-match (reference C.5): raw losses are not comparable across tasks, but "how many steps
tuned AdamW needs to reach the loss this rule reached" is, on every task, a ratio of budgets.

The rule is made symmetric: both arms are judged by their *best* validation loss L (running minimum
of the mean curve over seeds) and by the step s at which they first reached it, so AdamW measured
against itself scores ~0 even where its validation loss turns back up:

    score = clip(log2(tau_A(L_c) / d), FLOOR, CEILING)
    d = s_c                 if L_c <= L_A*  (at least as good as tuned AdamW's best within T)
    d = max(s_c, s_A*)      otherwise

tau_A(L) is the fewest steps tuned AdamW needs to reach L, the best over every tuned lr: from the
horizon-T runs when L >= L_A* (AdamW's best loss within the budget T, first reached at step s_A*),
else from the longer runs (2T, 4T: full runs with their own schedule), and then at least s_A*.
Mixing horizons for targets AdamW reaches within T would score AdamW against itself below 0: a
4T-schedule run at a higher lr passes through a loss sooner than the annealed T run reaches it. The second branch stops a rule that stalls early at a
poor loss from looking "fast": it is measured against the steps AdamW actually used. Where AdamW's val
loss does not turn up, s_A* = T and this is the VeLOdrome / reference C.5 rule log2(tau_A(L_c) / T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from optforge.types import CEILING, FLOOR

WIN_MARGIN = 1e-6
"""A task counts as a win only above this score: AdamW against itself lands at +-1e-16."""

__all__ = [
    "BaselineCurve",
    "TaskScore",
    "mean_curve",
    "running_min",
    "steps_to_reach",
    "tau_adamw",
    "task_score",
    "failed_task",
    "aggregate",
]


def _finite(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else math.inf


def running_min(values: Sequence[float]) -> list[float]:
    """The best value seen so far at each point; NaN and inf count as +inf (never an improvement)."""
    out: list[float] = []
    best = math.inf
    for v in values:
        best = min(best, _finite(v))
        out.append(best)
    return out


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """Pointwise mean over seeds; a non-finite value makes that point +inf. Curves must align."""
    if not curves:
        raise ValueError("mean_curve needs at least one curve")
    n = len(curves[0])
    if any(len(c) != n for c in curves):
        raise ValueError(f"curves have different lengths {[len(c) for c in curves]}; they must share eval steps")
    return [sum(_finite(c[i]) for c in curves) / len(curves) for i in range(n)]


def steps_to_reach(steps: Sequence[int], curve: Sequence[float], target: float) -> float | None:
    """First step at which the running-min of `curve` reaches `target`, or None if it never does.

    Between eval points log(step) is interpolated linearly in the loss (the eval points are
    log-spaced, so this is the natural reading of the curve). A target met at the first eval point
    returns that step.
    """
    best = running_min(curve)
    prev_s, prev_l = None, None
    for s, v in zip(steps, best):
        if v <= target:
            if prev_s is None or not math.isfinite(prev_l) or prev_l <= v:
                return float(s)
            frac = (prev_l - target) / (prev_l - v)
            return math.exp(math.log(prev_s) + frac * (math.log(s) - math.log(prev_s)))
        prev_s, prev_l = s, v
    return None


@dataclass(frozen=True)
class BaselineCurve:
    """One tuned-AdamW curve: mean over the evaluation's seeds, at one (lr, horizon)."""

    lr: float
    horizon: int
    steps: tuple[int, ...]
    val: tuple[float, ...]


def tau_adamw(curves: Iterable[BaselineCurve], target: float) -> float | None:
    """Steps tuned AdamW needs to reach `target`: the best over every lr and horizon; None if none does."""
    taus = [t for c in curves if (t := steps_to_reach(c.steps, c.val, target)) is not None]
    return min(taus) if taus else None


@dataclass(frozen=True)
class TaskScore:
    """One task's score and the numbers behind it."""

    score: float
    best_val: float
    steps_needed: float | None  # the step at which the candidate first reached best_val
    adamw_steps: float | None  # the steps tuned AdamW needs for the same loss (None: not within 4T)
    adamw_val: float  # tuned AdamW's best val loss at horizon T (for the table)
    flags: tuple[str, ...] = field(default=())

    @property
    def speedup(self) -> float:
        """The clipped AdamW-equivalent speedup, 2**score."""
        return 2.0**self.score


def _adamw_val_at_T(curves: Sequence[BaselineCurve], T: int) -> float:
    at_t = [min(running_min(c.val)) for c in curves if c.horizon == T]
    return min(at_t) if at_t else math.inf


def _adamw_best_within(curves: Sequence[BaselineCurve], T: int) -> tuple[float, float | None]:
    """(L_A*, s_A*): tuned AdamW's best loss with horizon T, and the first step it reached it."""
    best_l, best_s = math.inf, None
    for c in curves:
        if c.horizon != T:
            continue
        rm = running_min(c.val)
        if rm and rm[-1] < best_l:
            best_l = rm[-1]
            best_s = float(next(s for s, v in zip(c.steps, rm) if v <= best_l))
    return best_l, best_s


def failed_task(flag: str, curves: Sequence[BaselineCurve] = (), T: int = 0) -> TaskScore:
    """The floor score for a task the rule could not train (diverged at every lr, no finite loss)."""
    return TaskScore(FLOOR, math.inf, None, None, _adamw_val_at_T(curves, T), (flag,))


def task_score(
    steps: Sequence[int],
    val: Sequence[float],
    curves: Sequence[BaselineCurve],
    T: int,
    *,
    diverged: bool = False,
) -> TaskScore:
    """clip(log2(tau_AdamW(L_c) / s_c), FLOOR, CEILING) for a candidate's mean val curve over seeds.

    L_c is the best (running-min) mean validation loss and s_c the first step that reached it.
    Divergence or a curve with no finite loss gets the floor with a flag. A loss better than AdamW
    ever reaches within 4T gets the ceiling with the flag `beats_adamw_4T`.
    """
    if not curves:
        raise ValueError("task_score needs AdamW baseline curves; rebuild baselines for this suite")
    if diverged:
        return failed_task("diverged", curves, T)
    best = running_min(val)
    l_c = best[-1] if best else math.inf
    if not math.isfinite(l_c):
        return failed_task("no_finite_loss", curves, T)
    s_c = float(next(s for s, v in zip(steps, best) if v <= l_c))
    l_a, s_a = _adamw_best_within(curves, T)
    at_t = [c for c in curves if c.horizon == T]
    if l_c >= l_a or s_a is None:
        # within AdamW's reach at budget T: its T-horizon runs say how many steps it needs
        tau = tau_adamw(at_t or curves, l_c)
    else:
        # better than AdamW's best at T: ask the longer runs, and it needs at least s_A* steps
        longer = tau_adamw([c for c in curves if c.horizon > T], l_c)
        tau = None if longer is None else max(longer, s_a)
    denom = s_c if (s_a is None or l_c <= l_a) else max(s_c, s_a)
    flags: list[str] = []
    if tau is None:
        raw = math.inf
        flags.append("beats_adamw_4T")
    else:
        raw = math.log2(tau / denom)
    score = min(max(raw, FLOOR), CEILING)
    if raw < FLOOR:
        flags.append("floor")
    elif raw > CEILING and tau is not None:
        flags.append("ceiling")
    return TaskScore(score, l_c, s_c, tau, _adamw_val_at_T(curves, T), tuple(flags))


def aggregate(scores: Mapping[str, float]) -> dict[str, float | int]:
    """fitness (mean), robust (half the mean, half the mean of the worst 30 %), median, wins, worst."""
    vals = sorted(float(v) for v in scores.values())
    if not vals:
        return {"fitness": FLOOR, "robust": FLOOR, "median": FLOOR, "wins": 0, "worst": FLOOR}
    n = len(vals)
    mean = sum(vals) / n
    k = max(1, math.ceil(0.3 * n))
    worst_mean = sum(vals[:k]) / k
    mid = n // 2
    median = vals[mid] if n % 2 else 0.5 * (vals[mid - 1] + vals[mid])
    return {
        "fitness": mean,
        "robust": 0.5 * mean + 0.5 * worst_mean,
        "median": median,
        "wins": sum(1 for v in vals if v > WIN_MARGIN),
        "worst": vals[0],
    }
