"""Per-task scores against tuned AdamW, their intervals and aggregates. Pure functions on curves.

Why steps-to-match (AlgoPerf's time-to-target): raw losses are not comparable across
tasks, but "how many steps tuned AdamW needs to reach the loss this rule reached" is, on every task,
a ratio of budgets. The score (score_version 4, docs/suites.md "The score"):

    x     = L_c + delta                 (the candidate's best loss, made a tie at resolution delta)
    w     = clip((L_c - L_A*) / delta - 1, 0, 1)
    score = clip(log2(tau_A(x) / s_c(x)) - w * max(0, log2(s_A* / s_c(x))), FLOOR, CEILING)

- L_c: the candidate's best (running-min) mean validation loss; s_c(x): the first step its curve
  reaches x, read the same way as AdamW's (below).
- delta (`resolution`): the loss difference this task cannot resolve: float differences across CPUs
  and kernels (rho * |L_A*|) and AdamW's own seed noise of its best loss. Targeting L_c + delta
  instead of L_c makes two curves within delta score the same, so a 1e-7 difference is a tie.
- tau_A(x) (`AdamWEnvelope`): the fewest steps tuned AdamW needs to reach x. It is the lower envelope
  of the eval points of AdamW's tuned arms (`baselines.adamw_curves`: at each horizon the lr, and the
  weight decay when tuned, picked on the selection seeds as a candidate's are) at horizon T, and below L_A*
  (AdamW's best within T, first reached at s_A*) of the longer-horizon runs (2T, 4T), read as the
  Pareto frontier in (steps, loss) and interpolated linearly in log-steps between frontier points.
  So it is continuous and non-increasing in x; between (s_A*, L_A*) and the first longer-horizon
  point below L_A* it is that log-step interpolation, not a cliff. Longer-horizon points above L_A*
  are left out, and those below count at s_A* at the earliest: a 4T-schedule run passes through a
  loss sooner than an annealed T run stops at it, which would score AdamW's own T run below 0.
- No AdamW curve reaches x: the ceiling with the flag `beats_adamw_4T`.

- w: a rule worse than AdamW's best by more than delta is charged at least s_A* steps, since AdamW
  had a better loss by then; otherwise a rule that stalls at once (or never trains: its best is the
  first eval point, which AdamW "reaches" as soon) would tie with AdamW. Within delta of L_A* is a
  tie (no charge, w = 0); the charge is phased in linearly over the next delta, so the score is
  continuous.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from optforge.types import CEILING, FLOOR

SCORE_VERSION = 4
"""Bump whenever a score changes meaning; runs record it and resume refuses another (`check_score_version`).

2: ties at delta, a continuous envelope, intervals. 3: AdamW's chosen lr and delta come from the
selection seeds only, and the protocol measures an unscreened neighbour lr at full length before it
calls a pick an edge (`optforge/evaluators/protocol.py`), so a candidate's chosen lr can differ from 2.
4: tau_A is the envelope of AdamW's picked arms only (one per horizon, picked on the selection seeds,
`baselines.adamw_curves`), not of every lr on the scored seeds."""

RHO_FLOOR = 1e-4
"""Least relative loss resolution: float32 training on another CPU or kernel differs by ~1e-6..1e-5."""

Z95 = 1.959963984540054  # two-sided 95 % normal quantile

__all__ = [
    "SCORE_VERSION",
    "RHO_FLOOR",
    "BaselineCurve",
    "AdamWEnvelope",
    "TaskScore",
    "mean_curve",
    "running_min",
    "steps_to_reach",
    "frontier",
    "tau_adamw",
    "resolution",
    "task_score",
    "failed_task",
    "worse_weight",
    "half_width",
    "aggregate",
    "format_score",
    "check_score_version",
]


def _finite(x: float | None) -> float:
    if x is None:
        return math.inf
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


def frontier(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto frontier of (step, loss) points: sorted by step, each strictly lower in loss than
    every point at fewer or equal steps. Non-finite losses are dropped."""
    best = math.inf
    out: list[tuple[float, float]] = []
    for s, v in sorted((float(s), _finite(v)) for s, v in points):
        if v < best:
            if out and out[-1][0] == s:
                out.pop()
            out.append((s, v))
            best = v
    return out


def _reach(knots: Sequence[tuple[float, float]], target: float) -> float | None:
    """First step at which the frontier `knots` reaches `target`, log-step interpolated; None if never."""
    if not knots or not target >= knots[-1][1]:
        return None
    if target >= knots[0][1]:
        return knots[0][0]
    losses = [-v for _, v in knots]  # increasing
    i = bisect.bisect_left(losses, -target)  # knots[i] is the first knot with loss <= target
    (s0, l0), (s1, l1) = knots[i - 1], knots[i]
    if l1 == target:
        return s1
    frac = (l0 - target) / (l0 - l1)
    return math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0)))


def steps_to_reach(steps: Sequence[int], curve: Sequence[float], target: float) -> float | None:
    """First step at which one curve reaches `target` (its frontier, log-step interpolated), or None."""
    return _reach(frontier(zip(steps, curve)), target)


@dataclass(frozen=True)
class BaselineCurve:
    """One tuned-AdamW curve: mean over the evaluation's seeds, at one (lr, horizon[, weight decay])."""

    lr: float
    horizon: int
    steps: tuple[int, ...]
    val: tuple[float, ...]


@dataclass(frozen=True)
class AdamWEnvelope:
    """tau_A: the fewest steps tuned AdamW needs to reach a loss (module docstring).

    knots: the frontier, (step, loss) with steps increasing and losses strictly decreasing.
    best_at_T: (s_A*, L_A*), AdamW's best loss within horizon T and the first step it reached it.
    """

    knots: tuple[tuple[float, float], ...]
    best_at_T: tuple[float, float]

    @classmethod
    def of(cls, curves: Sequence[BaselineCurve], T: int) -> "AdamWEnvelope":
        at_t = [c for c in curves if c.horizon == T] or list(curves)
        short = frontier((s, v) for c in at_t for s, v in zip(c.steps, c.val))
        if not short:
            return cls((), (math.nan, math.inf))
        s_a, l_a = short[-1]
        # below L_A* only: a longer run that gets there before s_A* still needs s_A* (just after, so
        # (s_A*, L_A*) stays a knot and tau(L_A*) = s_A*)
        after = math.nextafter(s_a, math.inf)
        longer = [(max(s, after), v) for c in curves if c.horizon > T for s, v in zip(c.steps, c.val) if _finite(v) < l_a]
        return cls(tuple(frontier(short + longer)), (s_a, l_a))

    def tau(self, x: float) -> float | None:
        """Steps AdamW needs to reach loss x; None when no AdamW curve reaches it."""
        return _reach(self.knots, x)

    def log2_slope(self) -> float:
        """The largest |d log2 tau / d loss| between knots: tau's Lipschitz constant in log2 units."""
        return max(
            (abs(math.log2(s1 / s0)) / (l0 - l1) for (s0, l0), (s1, l1) in zip(self.knots, self.knots[1:])),
            default=0.0,
        )


def tau_adamw(curves: Sequence[BaselineCurve], target: float, T: int | None = None) -> float | None:
    """Steps tuned AdamW needs to reach `target` (the envelope of `curves`; T defaults to the shortest horizon)."""
    curves = list(curves)
    if not curves:
        return None
    return AdamWEnvelope.of(curves, T if T is not None else min(c.horizon for c in curves)).tau(target)


def resolution(best_loss: float, seed_bests: Sequence[float], rho: float, n: int) -> float:
    """delta: the smallest loss difference a score resolves on one task.

    max(rho * |L_A*|, sd(seed_bests) / sqrt(n)), where `seed_bests` are tuned AdamW's per-seed best
    losses at its chosen lr, `rho` >= RHO_FLOOR the relative difference measured across CPUs and
    kernels, and n the number of seeds whose mean curve is scored.
    """
    rho = max(float(rho), RHO_FLOOR)
    xs = [float(v) for v in seed_bests if math.isfinite(float(v))]
    sd = 0.0
    if len(xs) >= 2:
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((v - m) ** 2 for v in xs) / (len(xs) - 1))
    return max(rho * abs(best_loss), sd / math.sqrt(max(1, n)))


@dataclass(frozen=True)
class TaskScore:
    """One task's score and the numbers behind it."""

    score: float
    best_val: float
    steps_needed: float | None  # s_c(x): the step at which the candidate first reached x = best_val + delta
    adamw_steps: float | None  # tau_A(x): the steps tuned AdamW needs for the same loss (None: never)
    adamw_val: float  # tuned AdamW's best val loss at horizon T (for the table)
    flags: tuple[str, ...] = field(default=())
    delta: float = 0.0  # the resolution used

    @property
    def speedup(self) -> float:
        """The clipped AdamW-equivalent speedup, 2**score."""
        return 2.0**self.score


def failed_task(flag: str, curves: Sequence[BaselineCurve] = (), T: int = 0) -> TaskScore:
    """The floor score for a task the rule could not train (diverged at every lr, no finite loss)."""
    env = AdamWEnvelope.of(list(curves), T) if curves else None
    return TaskScore(FLOOR, math.inf, None, None, env.best_at_T[1] if env else math.inf, (flag,))


def worse_weight(l_c: float, l_a: float, delta: float) -> float:
    """w = clip((L_c - L_A*) / delta - 1, 0, 1): how far the candidate's best is beyond a tie with AdamW's.

    A rule worse than AdamW's best by more than delta is charged at least s_A* steps (AdamW had
    reached a better loss by then); w phases that charge in over the second delta, so the score
    stays continuous. With delta = 0 it is a step at L_A*.
    """
    if delta <= 0:
        return 1.0 if l_c > l_a else 0.0
    return min(1.0, max(0.0, (l_c - l_a) / delta - 1.0))


def task_score(
    steps: Sequence[int],
    val: Sequence[float],
    curves: Sequence[BaselineCurve],
    T: int,
    *,
    delta: float = 0.0,
    diverged: bool = False,
) -> TaskScore:
    """clip(log2(tau_A(x) / s_c(x)) - w * max(0, log2(s_A* / s_c(x))), FLOOR, CEILING), x = L_c + delta,
    w = `worse_weight`, for a candidate's mean val curve.

    Divergence or a curve with no finite loss gets the floor with a flag. A loss no AdamW curve
    reaches (at any lr or horizon) gets the ceiling with the flag `beats_adamw_4T`.
    """
    if not curves:
        raise ValueError("task_score needs AdamW baseline curves; rebuild baselines for this suite")
    if not delta >= 0:
        raise ValueError(f"delta={delta!r} must be >= 0")
    if diverged:
        return failed_task("diverged", curves, T)
    own = frontier(zip(steps, val))
    if not own:
        return failed_task("no_finite_loss", curves, T)
    env = AdamWEnvelope.of(list(curves), T)
    l_c = own[-1][1]
    x = l_c + delta
    s_c = _reach(own, x)
    tau = env.tau(x)
    flags: list[str] = []
    if tau is None:
        raw = math.inf
        flags.append("beats_adamw_4T")
    else:
        s_a, l_a = env.best_at_T
        raw = math.log2(tau / s_c) - worse_weight(l_c, l_a, delta) * max(0.0, math.log2(s_a / s_c))
    score = min(max(raw, FLOOR), CEILING)
    if raw < FLOOR:
        flags.append("floor")
    elif raw > CEILING and tau is not None:
        flags.append("ceiling")
    return TaskScore(score, l_c, s_c, tau, env.best_at_T[1], tuple(flags), delta)


def half_width(sigma: float | None, n: int) -> float | None:
    """The 95 % interval half-width of a task score on n seeds: 1.96 * sigma_task / sqrt(n).

    sigma_task is measured once per task on the references (baselines), never on the candidate's
    own 2-3 seeds. None when the baselines carry no sigma.
    """
    if sigma is None or not math.isfinite(sigma) or n < 1:
        return None
    return Z95 * float(sigma) / math.sqrt(n)


def aggregate(scores: Mapping[str, float], half_widths: Mapping[str, float | None] | None = None) -> dict[str, float | int]:
    """fitness (mean), robust (half the mean, half the mean of the worst 30 %), median, wins, worst.

    wins counts the tasks whose interval (score +- half width) lies above 0; a task without an
    interval wins only above 0 by more than float noise. fitness_hw is the half width of the mean
    (tasks independent): sqrt(sum hw^2) / n.
    """
    vals = sorted(float(v) for v in scores.values())
    if not vals:
        return {"fitness": FLOOR, "robust": FLOOR, "median": FLOOR, "wins": 0, "worst": FLOOR, "fitness_hw": None}
    hws = half_widths or {}
    n = len(vals)
    mean = sum(vals) / n
    k = max(1, math.ceil(0.3 * n))
    worst_mean = sum(vals[:k]) / k
    mid = n // 2
    median = vals[mid] if n % 2 else 0.5 * (vals[mid - 1] + vals[mid])
    wins = sum(1 for name, v in scores.items() if float(v) - (hws.get(name) or 1e-9) > 0)
    known = [hws.get(name) for name in scores]
    fitness_hw = math.sqrt(sum(h * h for h in known)) / n if known and all(h is not None for h in known) else None
    return {
        "fitness": mean,
        "robust": 0.5 * mean + 0.5 * worst_mean,
        "median": median,
        "wins": wins,
        "worst": vals[0],
        "fitness_hw": fitness_hw,
    }


def format_score(score: float, hw: float | None, digits: int = 2) -> str:
    """'+0.31 ± 0.12' (or '+0.31' without an interval): how every command prints a score. A score
    that rounds to zero prints as +0.00 whatever its sign, so one result never reads -0.00 in one
    command and +0.00 in another."""
    if round(score, digits) == 0:
        score = 0.0
    text = f"{score:+.{digits}f}"
    return text if hw is None else f"{text} ± {hw:.{digits}f}"


def check_score_version(recorded: object) -> str | None:
    """None when a run scored with `recorded` can be continued by this optforge, else why not.

    A run that recorded no version was scored before versions were recorded (score_version 1).
    """
    have = 1 if recorded in (None, "") else recorded
    try:
        have = int(have)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"the run records score_version {recorded!r}, which this optforge does not know"
    if have != SCORE_VERSION:
        return (
            f"the run was scored with score_version {have}, this optforge scores with {SCORE_VERSION}; "
            "its fitnesses are not comparable with new ones: start a new run"
        )
    return None
