"""Scoring on synthetic curves: AdamW vs itself, faster/slower, clipping, NaN, symmetry, aggregates."""

import math

import pytest

from optforge.evaluators.scoring import (
    BaselineCurve,
    aggregate,
    mean_curve,
    running_min,
    steps_to_reach,
    task_score,
    tau_adamw,
)
from optforge.types import CEILING, FLOOR

T = 300
STEPS = [1, 2, 4, 8, 16, 32, 64, 128, 200, 250, 300]


def power_curve(steps, rate=1.0, floor=0.0, turn_up_after=None):
    """loss = floor + 1/(1+step*rate), optionally turning back up (overfitting) after a step."""
    out = []
    for s in steps:
        v = floor + 1.0 / (1.0 + s * rate)
        if turn_up_after is not None and s > turn_up_after:
            v += 0.002 * (s - turn_up_after)
        out.append(v)
    return out


def adamw(rate=1.0, turn_up_after=None):
    curves = [BaselineCurve(1e-3, T, tuple(STEPS), tuple(power_curve(STEPS, rate, turn_up_after=turn_up_after)))]
    steps4 = [s * 4 for s in STEPS]
    curves.append(BaselineCurve(1e-3, 4 * T, tuple(steps4), tuple(power_curve(steps4, rate, turn_up_after=None))))
    return curves


def test_running_min_and_mean_treat_nan_as_inf():
    assert running_min([3, 2, 5, 1, float("nan")]) == [3, 2, 2, 1, 1]
    assert mean_curve([[1, 2], [3, float("nan")]]) == [2, math.inf]
    with pytest.raises(ValueError):
        mean_curve([[1, 2], [1]])


def test_steps_to_reach_interpolates_log_linearly():
    steps, curve = [10, 100], [1.0, 0.0]
    assert steps_to_reach(steps, curve, 1.0) == 10
    assert steps_to_reach(steps, curve, 0.5) == pytest.approx(math.sqrt(10 * 100))
    assert steps_to_reach(steps, curve, -1.0) is None


def test_adamw_against_itself_scores_zero():
    base = adamw()
    s = task_score(STEPS, power_curve(STEPS), base, T)
    assert s.score == pytest.approx(0.0, abs=1e-9)
    assert s.flags == ()


def test_adamw_against_itself_scores_zero_when_val_turns_up():
    base = adamw(turn_up_after=128)
    s = task_score(STEPS, power_curve(STEPS, turn_up_after=128), base, T)
    assert s.score == pytest.approx(0.0, abs=1e-9)
    assert s.steps_needed == 128


def test_faster_positive_slower_negative_and_symmetric():
    base = adamw()
    # twice as fast: reaches each loss in half the steps
    fast = task_score(STEPS, power_curve(STEPS, rate=2.0), base, T)
    slow = task_score(STEPS, power_curve(STEPS, rate=0.5), base, T)
    assert fast.score > 0.5
    assert slow.score < -0.5
    # a rule exactly 2x slower scores -1: the mirror image of 2x faster would be +1
    steps_half = STEPS
    s = task_score(steps_half, power_curve([x / 2 for x in STEPS]), base, T)
    assert s.score == pytest.approx(-1.0, abs=0.05)


def test_clipping_and_ceiling_flag():
    base = adamw()
    never = task_score(STEPS, [5.0] * len(STEPS), base, T)  # never better than AdamW's first point
    assert never.score == FLOOR and "floor" in never.flags
    super_good = task_score(STEPS, [1e-9] * len(STEPS), base, T)  # beats AdamW even at 4T
    assert super_good.score == CEILING and "beats_adamw_4T" in super_good.flags


def test_nan_and_divergence_get_the_floor_with_a_flag():
    base = adamw()
    nan = task_score(STEPS, [float("nan")] * len(STEPS), base, T)
    assert nan.score == FLOOR and "no_finite_loss" in nan.flags
    div = task_score(STEPS, power_curve(STEPS), base, T, diverged=True)
    assert div.score == FLOOR and "diverged" in div.flags


def test_a_rule_that_stalls_early_at_a_poor_loss_is_not_fast():
    base = adamw()
    stall = [0.9, 0.6, 0.5] + [0.5] * (len(STEPS) - 3)  # best reached at step 4, far worse than AdamW
    s = task_score(STEPS, stall, base, T)
    assert s.score < -2.0


def test_reaching_adamws_best_sooner_counts_as_faster():
    base = adamw(turn_up_after=128)
    # the same curve, compressed 2x in time: reaches AdamW's best at step 64 instead of 128
    cand = power_curve([2 * s for s in STEPS], turn_up_after=256)
    s = task_score(STEPS, cand, base, T)
    assert s.score > 0.5


def test_tau_takes_the_best_lr_per_target():
    a = BaselineCurve(1e-3, T, (10, 100), (1.0, 0.5))
    b = BaselineCurve(1e-2, T, (10, 100), (0.4, 0.39))
    assert tau_adamw([a, b], 0.45) == 10
    assert tau_adamw([a, b], 0.6) == 10 and tau_adamw([a], 0.6) > 10


def test_aggregates():
    scores = {f"t{i}": v for i, v in enumerate([-3, -1, 0, 0.5, 1, 2, 2, 0, 0, 1])}
    agg = aggregate(scores)
    assert agg["fitness"] == pytest.approx(0.25)
    assert agg["worst"] == -3
    assert agg["wins"] == 5
    assert agg["median"] == pytest.approx(0.25)
    # worst 30 % = 3 tasks: -3, -1, 0 -> mean -4/3
    assert agg["robust"] == pytest.approx(0.5 * 0.25 + 0.5 * (-4 / 3))
    assert aggregate({})["fitness"] == FLOOR


def test_a_longer_run_passing_through_the_loss_sooner_does_not_move_adamw_off_zero():
    base = adamw()
    # a 4T-schedule run at a higher lr that passes through AdamW's T-best loss at step 100
    fast4 = [s * 4 for s in STEPS]
    base.append(BaselineCurve(3e-3, 4 * T, tuple(fast4), tuple(power_curve(fast4, rate=3.0))))
    s = task_score(STEPS, power_curve(STEPS), base, T)
    assert s.score == pytest.approx(0.0, abs=1e-9)
    # a rule better than AdamW's best at T is measured against the longer runs, and never below s_A*
    better = task_score(STEPS, power_curve(STEPS, rate=1.5), base, T)
    assert better.score >= 0.0 and better.adamw_steps >= T
