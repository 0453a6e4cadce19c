"""EvalRequest's rollout fields (issue 17): a subset of tasks, reused lr multipliers, a detail level."""

import math

import pytest

from optforge import seeds
from optforge.evaluators import EvalRequest, baseline_payload, evaluate
from optforge.evaluators.protocol import RunOutcome, TaskInfo, grid_index, multiplier, tune
from optforge.rule import with_hparams_source
from optforge.types import Status


def points(T):
    return sorted({max(1, round(T * f)) for f in (0.25, 0.5, 1.0)})


def synthetic_execute(best_lr, log):
    """A stand-in for the sandbox: loss falls with steps, fastest at `best_lr`."""

    def execute(specs):
        log.append(list(specs))
        return [RunOutcome(sp, list(sp.eval_steps), [1.0 / (1.0 + s / (1.0 + abs(math.log10(sp.lr / best_lr))))
                                                     for s in sp.eval_steps], [], None) for sp in specs]

    return execute


def test_unknown_task_names_are_refused_naming_the_suites_tasks():
    with pytest.raises(ValueError, match=r"\['nope'\].*smoke_quad, smoke_mix"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", tasks=("smoke_quad", "nope"))
    with pytest.raises(ValueError, match=r"lr_multipliers names \['nope'\].*smoke_quad, smoke_mix"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", lr_multipliers={"nope": 1.0})
    with pytest.raises(ValueError, match="at least one task"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", tasks=())
    with pytest.raises(ValueError, match="tuple of task names"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", tasks="smoke_quad")
    with pytest.raises(ValueError, match="more than once"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", tasks=("smoke_quad", "smoke_quad"))


def test_bad_detail_and_multipliers_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"detail='full'.*summary, trace"):
        EvalRequest("LR = 1e-3", "smoke", detail="full")
    with pytest.raises(ValueError, match=r"lr_multipliers\['smoke_quad'\].*not on the half-decade grid"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", lr_multipliers={"smoke_quad": 2.0})
    with pytest.raises(ValueError, match=r"lr_multipliers\['smoke_quad'\].*positive"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", lr_multipliers={"smoke_quad": -1.0})
    with pytest.raises(ValueError, match="tune_wd"):
        EvalRequest("LR = 1e-3", "smoke", suite="smoke", lr_multipliers={"smoke_quad": 1.0}, tune_wd=True)
    r = EvalRequest("LR = 1e-3", "smoke", suite="smoke", tasks=["smoke_mix"], lr_multipliers={"smoke_quad": 10 ** 0.5},
                    detail="trace")
    assert r.tasks == ("smoke_mix",) and r.lr_multipliers == {"smoke_quad": 10 ** 0.5}


def test_grid_index_inverts_multiplier():
    assert [grid_index(multiplier(h)) for h in range(-6, 7)] == list(range(-6, 7))
    assert grid_index(0.31622776601683794) == -1  # as a JSON round trip of multiplier(-1) gives it


def test_fixed_multipliers_run_once_at_that_lr_on_the_scored_seeds():
    lr0, log = 1e-3, []
    fixed, tuned = TaskInfo("fixed", "q", 90), TaskInfo("tuned", "q", 90)
    out = tune([fixed, tuned], lr0, (0, 1), synthetic_execute(lr0 * multiplier(2), log), points,
               fixed_multipliers={"fixed": multiplier(-1)})
    fixed_runs = [sp for batch in log for sp in batch if sp.task == "fixed"]
    assert [(sp.h, sp.seed, sp.steps) for sp in fixed_runs] == [(-1, 0, 90), (-1, 1, 90)]
    assert out["fixed"].chosen == -1 and out["fixed"].screen == {} and out["fixed"].at_edge is None
    assert [r.spec.seed for r in out["fixed"].reported] == [0, 1]
    assert out["tuned"].chosen == 2 and out["tuned"].extensions > 0  # the other task is tuned as before

    log.clear()
    out = tune([fixed], lr0, (0, 1), synthetic_execute(lr0, log), points, fresh_seeds=(5, 6),
               fixed_multipliers={"fixed": 1.0})
    assert len(log) == 1 and [(sp.h, sp.seed) for sp in log[0]] == [(0, 5), (0, 6)]  # one phase, fresh seeds only
    assert [r.spec.seed for r in out["fixed"].reported] == [5, 6]
    with pytest.raises(ValueError, match="weight-decay"):
        tune([fixed], lr0, (0, 1), synthetic_execute(lr0, log), points, wd_grid=(0.0, 0.1), fixed_multipliers={"fixed": 1.0})


@pytest.fixture(scope="module")
def smoke_payload():
    return baseline_payload("smoke")


ADAMW_SMOKE = with_hparams_source(seeds.source("adamw"), {"LR": 0.1})


def test_a_rollout_with_reused_lr_repeats_the_tuned_run(smoke_payload):
    tuned = evaluate(EvalRequest(ADAMW_SMOKE, "smoke", suite="smoke", baselines=smoke_payload, tasks=("smoke_quad",)))
    assert tuned.status is Status.OK, tuned.feedback
    assert set(tuned.metrics["tasks"]) == {"smoke_quad"} and set(tuned.artifacts["curves"]) == {"smoke_quad"}
    row = tuned.metrics["tasks"]["smoke_quad"]
    assert len(row["tried"]) == 3

    mults = {"smoke_quad": row["lr_mult"], "smoke_mix": 1.0}  # a multiplier for a task not run is ignored
    reused = evaluate(EvalRequest(ADAMW_SMOKE, "smoke", suite="smoke", baselines=smoke_payload, tasks=("smoke_quad",),
                                  lr_multipliers=mults))
    assert reused.status is Status.OK, reused.feedback
    again = reused.metrics["tasks"]["smoke_quad"]
    assert again["lr_mult"] == row["lr_mult"] and again["tried"] == {}
    # the same task, seed and lr: the same run, so the same trusted validation curve and score
    assert reused.artifacts["curves"] == tuned.artifacts["curves"]
    assert again["score"] == row["score"] and math.isfinite(again["score"])
