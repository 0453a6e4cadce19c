"""The lr protocol: grid extension and halving logic on synthetic runs, then real sandboxed evaluations."""

import math

import pytest

from optforge.evaluators.protocol import (
    ProtocolConfig,
    RunOutcome,
    TaskInfo,
    multiplier,
    next_extension,
    tune,
)


def points(T):
    return sorted({max(1, round(T * f)) for f in (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)})


def synthetic_execute(best_lr, log):
    """A stand-in for the sandbox: loss falls with steps, fastest at `best_lr`; lr > 100x best diverges."""

    def execute(specs):
        log.append(list(specs))
        out = []
        for sp in specs:
            dist = abs(math.log10(sp.lr / best_lr))
            if sp.lr > 100 * best_lr:
                out.append(RunOutcome(sp, list(sp.eval_steps[:1]), [math.inf], [], diverged_at=1))
                continue
            val = [1.0 / (1.0 + s / (1.0 + dist)) + 0.001 * sp.seed for s in sp.eval_steps]
            out.append(RunOutcome(sp, list(sp.eval_steps), val, [], None))
        return out

    return execute


def test_next_extension():
    assert next_extension({-1: 3.0, 0: 2.0, 1: 1.0}, (-1, 0, 1), 2) == 2
    assert next_extension({-1: 1.0, 0: 2.0, 1: 3.0}, (-1, 0, 1), 2) == -2
    assert next_extension({-1: 2.0, 0: 1.0, 1: 3.0}, (-1, 0, 1), 2) is None
    assert next_extension({-3: 1.0, -2: 2.0, -1: 3.0, 0: 4, 1: 5}, (-1, 0, 1), 2) is None  # bound reached
    assert next_extension({-1: math.inf, 0: math.inf, 1: math.inf}, (-1, 0, 1), 2) == -2  # all diverged


@pytest.mark.parametrize("true_h,chosen,extensions", [(0, 0, 0), (1, 1, 1), (2, 2, 2), (-2, -2, 2), (5, 3, 2)])
def test_grid_extends_until_best_is_interior(true_h, chosen, extensions):
    lr0 = 1e-3
    log = []
    task = TaskInfo("t", "quadratic", 300)
    out = tune([task], lr0, (0, 1), synthetic_execute(lr0 * multiplier(true_h), log), points)
    tt = out["t"]
    assert tt.chosen == chosen
    assert tt.extensions == extensions
    # screen runs: a ~T/3 prefix of the full-T schedule on the first seed only
    screen = [sp for batch in log[:-1] for sp in batch]
    assert all(sp.steps == 100 and sp.horizon == 300 and sp.seed == 0 for sp in screen)
    # final: the best two multipliers, full T, on every selection seed
    final = log[-1]
    assert {sp.seed for sp in final} == {0, 1} and all(sp.steps == 300 for sp in final)
    assert len({sp.h for sp in final}) == 2
    assert (true_h == 5) == (tt.at_edge == "high")


def test_fresh_seeds_are_scored_alone():
    lr0 = 1e-3
    log = []
    out = tune([TaskInfo("t", "q", 90)], lr0, (0, 1), synthetic_execute(lr0, log), points, fresh_seeds=(2, 3, 4))
    tt = out["t"]
    assert [r.spec.seed for r in tt.reported] == [2, 3, 4]
    assert all(r.spec.h == tt.chosen for r in tt.reported)


def test_no_halving_runs_every_multiplier_on_every_seed():
    log = []
    cfg = ProtocolConfig(grid=tuple(range(-2, 5)), halving=False)
    out = tune([TaskInfo("t", "q", 60)], 1e-3, (0, 1, 2), synthetic_execute(1e-3, log), points, cfg)
    assert len(log) == 1 and len(log[0]) == 7 * 3
    assert out["t"].chosen == 0 and set(out["t"].full) == set(range(-2, 5))


def test_all_diverged_extends_down_then_gives_up():
    log = []
    out = tune([TaskInfo("t", "q", 60)], 1.0, (0,), synthetic_execute(1e-6, log), points)
    tt = out["t"]
    assert sorted(tt.screen) == [-3, -2, -1, 0, 1]
    assert tt.all_diverged
