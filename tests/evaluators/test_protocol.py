"""The lr protocol: grid extension and halving logic on synthetic runs, then real sandboxed evaluations."""

import math

import pytest

from optforge.evaluators.protocol import (
    ProtocolConfig,
    RunOutcome,
    TaskInfo,
    RunSpec,
    multiplier,
    next_extension,
    pick,
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


def _arm(h, vals, steps=(10, 20, 40, 80)):
    spec = RunSpec("t", h, 1e-3 * multiplier(h), 0, steps[-1], steps[-1], tuple(steps))
    return [RunOutcome(spec, list(steps), list(vals), [], None)]


def test_pick_takes_the_fastest_arm_within_delta_of_the_best():
    """Issue 14: the lr pick used to decide on loss differences of 1e-7; now they are ties."""
    slow_best = _arm(0, [1.0, 0.5, 0.2, 0.1000000])
    fast_tied = _arm(1, [0.6, 0.2, 0.1001, 0.1000001])  # 1e-7 worse at the end, 2x sooner to reach it
    worse = _arm(2, [0.3, 0.15, 0.12, 0.12])
    arms = {0: slow_best, 1: fast_tied, 2: worse}
    assert pick(arms, 0.0) == 0  # no resolution: the lowest loss decides
    assert pick(arms, 1e-3) == 1  # within delta: the one reaching best + delta in the fewest steps
    assert pick(arms, 0.05) == 2  # a coarse resolution ties all three, and arm 2 gets there first
    diverged = {0: [RunOutcome(slow_best[0].spec, [10], [math.inf], [], 1)]}
    assert pick(diverged, 1e-3) == 0 and pick({}, 1e-3) is None


def test_next_extension():
    assert next_extension({-1: 3.0, 0: 2.0, 1: 1.0}, (-1, 0, 1), 2) == 2
    assert next_extension({-1: 1.0, 0: 2.0, 1: 3.0}, (-1, 0, 1), 2) == -2
    assert next_extension({-1: 2.0, 0: 1.0, 1: 3.0}, (-1, 0, 1), 2) is None
    assert next_extension({-3: 1.0, -2: 2.0, -1: 3.0, 0: 4, 1: 5}, (-1, 0, 1), 2) is None  # bound reached
    assert next_extension({-3: 1.0, -2: 2.0, -1: 3.0, 0: 4, 1: 5}, (-1, 0, 1), 3) == -4
    assert next_extension({-1: math.inf, 0: math.inf, 1: math.inf}, (-1, 0, 1), 2) == -2  # all diverged


@pytest.mark.parametrize("true_h,chosen,extensions", [(0, 0, 0), (1, 1, 1), (2, 2, 2), (-2, -2, 2), (6, 4, 3)])
def test_grid_extends_until_best_is_interior(true_h, chosen, extensions):
    lr0 = 1e-3
    log = []
    task = TaskInfo("t", "quadratic", 300)
    out = tune([task], lr0, (0, 1), synthetic_execute(lr0 * multiplier(true_h), log), points)
    tt = out["t"]
    assert tt.chosen == chosen
    assert tt.extensions == extensions
    # screen runs: a complete T/3-step schedule on the first seed only
    n_screen = 1 + extensions
    screen = [sp for batch in log[:n_screen] for sp in batch]
    assert all(sp.steps == 100 and sp.horizon == 100 and sp.seed == 0 for sp in screen)
    # then the best two multipliers, full T, on every selection seed
    final = log[n_screen]
    assert {sp.seed for sp in final} == {0, 1} and all(sp.steps == 300 for sp in final)
    assert len({sp.h for sp in final}) == 2
    # climbing adds at most one full-length multiplier per round, and the pick is interior to them
    for batch in log[n_screen + 1:]:
        assert len({sp.h for sp in batch}) == 1 and all(sp.steps == 300 for sp in batch)
    assert len(log) <= n_screen + 1 + ProtocolConfig().climb
    assert (true_h == 6) == (tt.at_edge == "high")


def test_full_length_climb_recovers_the_lr_that_short_screens_drop():
    """Short runs favour a large lr whose validation loss turns up late (an overfitting task); the
    full-length best must still be found, as the baselines' full-length grid finds it."""
    log = []

    def execute(specs):
        log.append(list(specs))
        out = []
        for sp in specs:
            # best lr shifts with run length: h=3 at 100 steps, h=1 at 300
            best_h = 3 if sp.steps <= 100 else 1
            val = [1.0 + 0.1 * abs(sp.h - best_h) - s / (10.0 * sp.steps) for s in sp.eval_steps]
            out.append(RunOutcome(sp, list(sp.eval_steps), val, [], None))
        return out

    tt = tune([TaskInfo("t", "mlp", 300)], 1e-3, (0, 1), execute, points)["t"]
    assert tt.chosen == 1
    assert {1, 2, 3} <= set(tt.full)  # kept {3, 4} (or {2, 3}), then climbed down to 1 and checked 0 or 2
    no_climb = tune([TaskInfo("t", "mlp", 300)], 1e-3, (0, 1), execute, points, ProtocolConfig(climb=0))["t"]
    assert no_climb.chosen != 1


def test_a_chosen_lr_at_the_top_of_the_lrs_run_is_measured_one_step_further_before_it_is_an_edge():
    """The screen ranks a larger lr below a smaller one that full length prefers (AdamW on logreg): the
    full-length best is then the largest lr run, and the next one up, never screened, runs at full
    length before the pick is called an edge. It is worse here, so the pick is interior: no flag."""

    def execute(specs):
        out = []
        for sp in specs:
            best_h = 1 if sp.steps <= 100 else 2  # the screen prefers h=1, full length h=2
            val = [1.0 + 0.1 * abs(sp.h - best_h) - s / (10.0 * sp.steps) for s in sp.eval_steps]
            out.append(RunOutcome(sp, list(sp.eval_steps), val, [], None))
        return out

    tt = tune([TaskInfo("t", "convex", 300)], 1e-3, (0, 1), execute, points)["t"]
    assert max(tt.screen) == 2 and tt.chosen == 2
    assert 3 in tt.full and 3 not in tt.screen  # measured at full length, unscreened
    assert tt.at_edge is None
    # a real edge stays one: the grid's reach ends where the full-length best lies
    tt = tune([TaskInfo("t", "convex", 300)], 1e-3, (0, 1), execute, points, ProtocolConfig(max_extensions=1))["t"]
    assert tt.chosen == 2 and 3 not in tt.full and tt.at_edge == "high"


def test_weight_decay_is_tried_at_the_chosen_lr_and_carried_to_the_fresh_seeds():
    """With a wd grid, each weight decay runs at the chosen multiplier on the selection seeds; the best
    arm (0 included) is the one re-run on the fresh seeds."""
    log = []

    def execute(specs):
        log.append(list(specs))
        return [RunOutcome(sp, list(sp.eval_steps),
                           [1.0 + abs(sp.h) + abs(math.log10(sp.weight_decay or 1e-9) + 1) - s / 1000 for s in sp.eval_steps],
                           [], None) for sp in specs]

    tt = tune([TaskInfo("t", "q", 90)], 1e-3, (0, 1), execute, points, fresh_seeds=(2, 3), wd_grid=(0.0, 0.01, 0.1, 1.0))["t"]
    assert tt.chosen == 0 and tt.wd == 0.1
    assert sorted(tt.wd_runs) == [0.01, 0.1, 1.0]
    assert all(r.spec.h == tt.chosen and r.spec.seed in (0, 1) for runs in tt.wd_runs.values() for r in runs)
    assert [(r.spec.seed, r.spec.weight_decay) for r in tt.reported] == [(2, 0.1), (3, 0.1)]
    # without a grid nothing changes: every run has weight decay 0
    log.clear()
    plain = tune([TaskInfo("t", "q", 90)], 1e-3, (0, 1), execute, points, fresh_seeds=(2, 3))["t"]
    assert plain.wd == 0.0 and not plain.wd_runs
    assert all(sp.weight_decay == 0.0 for batch in log for sp in batch)


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
    assert sorted(tt.screen) == [-4, -3, -2, -1, 0, 1]
    assert tt.all_diverged


# ---------------------------------------------------------------------------------------------
# real evaluations through the sandbox on the smoke suite (one sandbox call each)

import torch.nn.functional as F  # noqa: E402

from optforge import seeds  # noqa: E402
from optforge.evaluators import EvalRequest, baseline_payload, evaluate  # noqa: E402
from optforge.rule import with_hparams_source  # noqa: E402
from optforge.types import FLOOR, Status  # noqa: E402

NAN_RULE = """
LR = 1e-3

def init(p, ctx):
    return {}

def update(p, g, state, ctx):
    return (g - g) / (g - g)
"""

CONSTANT_RULE = """
import torch

LR = 1e-3

def init(p, ctx):
    return {}

def update(p, g, state, ctx):
    return torch.full_like(p, 0.05)
"""

# tries to change its own score: every loss function returns 0, and Tensor.item lies too.
# Run with the static check off so only the trusted-validation layer stands in the way.
PATCHING_RULE = with_hparams_source(seeds.source("adamw"), {"LR": 0.1}) + """

import torch.nn.functional as F

def _zero(*args, **kwargs):
    return torch.zeros((), requires_grad=True)

F.cross_entropy = _zero
F.mse_loss = _zero
F.nll_loss = _zero
F.binary_cross_entropy_with_logits = _zero
torch.Tensor.item = lambda self: 0.0
"""


@pytest.fixture(scope="module")
def smoke_payload():
    return baseline_payload("smoke")


# AdamW with its LR moved to where the tiny smoke tasks want it (their tuned AdamW lr is 0.1-1; the
# smoke stage tries only 3 multipliers), so its scores are meaningful contrasts
ADAMW_SMOKE = with_hparams_source(seeds.source("adamw"), {"LR": 0.1})


@pytest.fixture(scope="module")
def adamw_smoke(smoke_payload):
    return evaluate(EvalRequest(ADAMW_SMOKE, "smoke", suite="smoke", baselines=smoke_payload, measure_state=True))


def test_adamw_on_smoke_is_ok_with_fingerprint(adamw_smoke):
    r = adamw_smoke
    assert r.status is Status.OK, r.feedback
    assert r.suite == "smoke" and r.suite_version and r.seeds == (0,)
    assert set(r.metrics["tasks"]) == {"smoke_quad", "smoke_mix"}
    assert isinstance(r.artifacts["fingerprint"], str) and len(r.artifacts["fingerprint"]) == 16
    for t in r.metrics["tasks"].values():
        assert FLOOR <= t["score"] <= 2.0
        assert t["lr"] == pytest.approx(0.1 * t["lr_mult"])
    assert r.fitness > -1.0  # near tuned AdamW
    # m and v, float32: the rule process's resident memory on the probe, within its resolution
    assert r.metrics["state_bytes_per_param"] == pytest.approx(8.0, abs=0.05)
    # the resolution moves with allocator noise under load; a thirty-second of AdamW's 8 bytes still tells
    # a rule with one state tensor (4 bytes) from one with two
    assert 0 < r.metrics["state_bytes_resolution_per_param"] < 0.25
    curves = r.artifacts["curves"]["smoke_mix"]
    assert len(curves["steps"]) == len(curves["val"]) == len(curves["adamw_val"]) > 3


def test_state_probe_runs_once_per_candidate():
    """The state-memory probe runs at the candidate's train evaluation (export and prompts read its
    metrics) and wherever a caller asks (optforge eval), not at the smoke gate or the funnel stages."""
    from optforge.evaluators.validate import measures_state

    assert [measures_state(s) for s in ("smoke", "train", "train_fresh_seeds", "heldout")] == [False, True, False, False]
    assert measures_state("heldout", True) and not measures_state("train", False)


def test_same_rule_same_numbers_with_one_or_two_jobs(adamw_smoke, smoke_payload):
    r2 = evaluate(EvalRequest(ADAMW_SMOKE, "smoke", suite="smoke", baselines=smoke_payload, workers=2))
    assert r2.metrics["sandbox_calls"] == 2
    # the smoke gate does not run the state-memory probe (the candidate's train evaluation does)
    assert r2.metrics["state_bytes_per_param"] is None
    for name, t in adamw_smoke.metrics["tasks"].items():
        assert r2.metrics["tasks"][name]["best_val"] == t["best_val"]
        assert r2.metrics["tasks"][name]["tried"] == t["tried"]
        assert r2.metrics["tasks"][name]["score"] == t["score"]
    assert r2.artifacts["curves"] == adamw_smoke.artifacts["curves"]
    assert r2.artifacts["fingerprint"] == adamw_smoke.artifacts["fingerprint"]


def test_nan_rule_gets_the_floor_and_diverged(smoke_payload):
    r = evaluate(EvalRequest(NAN_RULE, "smoke", suite="smoke", baselines=smoke_payload))
    assert r.status is Status.DIVERGED
    assert r.fitness == FLOOR
    assert all("diverged" in t["flags"] and t["score"] == FLOOR for t in r.metrics["tasks"].values())
    assert "diverged" in r.feedback


def test_constant_rule_scores_badly(adamw_smoke, smoke_payload):
    for source in (CONSTANT_RULE, CONSTANT_RULE.replace("0.05)", "ctx.lr)")):
        r = evaluate(EvalRequest(source, "smoke", suite="smoke", baselines=smoke_payload))
        assert r.status is Status.OK, r.feedback
        assert r.fitness <= -2.5, r.metrics["tasks"]
        assert r.fitness < adamw_smoke.fitness - 2.0


def test_a_rule_cannot_change_its_validation_score(adamw_smoke, smoke_payload):
    original = F.cross_entropy
    r = evaluate(
        EvalRequest(PATCHING_RULE, "smoke", suite="smoke", baselines=smoke_payload, sandbox={"static_check": False})
    )
    assert F.cross_entropy is original  # nothing leaked into the trusted process
    assert r.status is Status.OK, r.feedback
    # the patch ran in the rule process, which holds no loss: the trainer's train loss and the trusted
    # validation are those of the honest AdamW twin, bit for bit
    assert r.artifacts["curves"] == adamw_smoke.artifacts["curves"]
    assert r.metrics["tasks"]["smoke_mix"]["score"] == adamw_smoke.metrics["tasks"]["smoke_mix"]["score"]


def test_static_check_failure_is_invalid_without_running(smoke_payload):
    r = evaluate(EvalRequest("import os\nLR = 1e-3\n", "smoke", suite="smoke", baselines=smoke_payload))
    assert r.status is Status.INVALID and r.fitness == FLOOR
    assert "os" in r.feedback


def test_baseline_version_mismatch_is_an_error(smoke_payload):
    from optforge.evaluators.baselines import BaselineError

    stale = dict(smoke_payload, suite_version="0-stale")
    with pytest.raises(BaselineError, match="rebuild"):
        evaluate(EvalRequest(seeds.source("adamw"), "smoke", suite="smoke", baselines=stale))


# ---------------------------------------------------------------------------------------------
# slow: the full train suite (minutes of CPU)


@pytest.fixture(scope="module")
def train_results():
    payload = baseline_payload("train")
    out = {}
    for name in ("adamw", "sgd", "lion", "muon"):
        out[name] = evaluate(EvalRequest(seeds.source(name), "train", suite="train", baselines=payload, workers=2))
    return payload, out


@pytest.mark.slow
def test_adamw_scores_zero_on_train_with_no_significant_win(train_results):
    """Done-when of issue 14: AdamW on `train`, against baselines built on another CPU."""
    _, res = train_results
    r = res["adamw"]
    assert r.status is Status.OK, r.feedback
    assert abs(r.metrics["fitness"]) <= 0.05 and r.metrics["wins"] == 0, r.metrics
    for task, t in r.metrics["tasks"].items():
        assert abs(t["score"]) <= t["hw"], (task, t["score"], t["hw"])


@pytest.mark.slow
def test_the_train_suite_separates_the_references(train_results):
    _, res = train_results
    tasks = res["adamw"].metrics["tasks"]
    wide = [
        t for t in tasks
        if max(res[n].metrics["tasks"][t]["score"] for n in res) - min(res[n].metrics["tasks"][t]["score"] for n in res) > 1.0
    ]
    assert len(wide) >= 3, {t: {n: res[n].metrics["tasks"][t]["score"] for n in res} for t in tasks}


@pytest.mark.slow
def test_muon_beats_adamw_on_the_ill_conditioned_matrix_task(train_results):
    _, res = train_results
    muon = res["muon"].metrics["tasks"]["linreg2d"]
    assert muon["score"] > 0.0, muon
    assert muon["best_val"] < muon["adamw_val"]


def test_baseline_checks_and_derivation():
    from optforge.evaluators import baselines
    from optforge.evaluators.tasks import get_suite

    suite = get_suite("smoke")
    data = baselines.load("smoke")
    errors, _ = baselines.check(dict(data, suite_version="0-old"), suite)  # same tasks: carried over, new seeds only
    assert errors and "--add-seeds" in errors[0]
    errors, _ = baselines.check(dict(data, suite_version="0-old", suite_digest="0" * 16), suite)
    assert errors and "--rebuild" in errors[0]
    _, warnings = baselines.check(dict(data, torch="1.0"), suite)
    assert any("torch 1.0" in w for w in warnings)
    _, warnings = baselines.check(dict(data, suite_digest="0" * 16), suite)
    assert any("changed" in w for w in warnings)
    sub = baselines.derive(data, suite, suite)
    assert sub["derived_from"] == "smoke" and set(sub["table"]) >= {"adamw"}


def test_weight_decay_curves_join_adamw_only_when_the_evaluation_tunes_weight_decay():
    from optforge.evaluators import baselines

    data = baselines.load("heldout_tiny")
    payload = baselines.payload_from(data)
    assert baselines.weight_decay_grid(payload) == baselines.WD_GRID
    task = "tiny_diabetes_mlp"
    plain, _ = baselines.adamw_curves(payload, task, (2, 3, 4))
    with_wd, _ = baselines.adamw_curves(payload, task, (2, 3, 4), weight_decay=True)
    runs = payload["tasks"][task]["adamw"]["runs"]
    # one tuned arm per horizon on both sides; only a weight-decay-tuning evaluation gets wd > 0 arms
    plain_arms = baselines.selected_runs(payload, task)
    wd_arms = baselines.selected_runs(payload, task, weight_decay=True)
    assert len(plain) == len(plain_arms) == len(with_wd) == len(wd_arms) == 3
    assert all(baselines.run_wd(r) == 0 for r in plain_arms)
    assert any(baselines.run_wd(r) > 0 for r in wd_arms)
    assert [c.val for c in with_wd] != [c.val for c in plain]
    # the weight decay is picked at the lr picked without it, horizon by horizon
    assert [(r["horizon"], r["h"]) for r in wd_arms] == [(r["horizon"], r["h"]) for r in plain_arms]
    # each horizon's chosen lr gets every weight decay
    for horizon, h in data["tasks"][task]["adamw"]["chosen"].items():
        wds = {baselines.run_wd(r) for r in runs if str(r["horizon"]) == horizon and r["h"] == h}
        assert wds == {0.0, *baselines.WD_GRID}
    # the reference table stays weight-decay free: AdamW's own row (lr picked on the selection seeds,
    # scored on the report seeds against its wd-0 curves) lies within its interval of 0
    row = data["table"]["adamw"]["tasks"][task]
    assert abs(row["score"]) <= row["hw"] and "beats_adamw_4T" not in row["flags"]


def test_add_weight_decay_runs_adamw_at_each_horizons_chosen_lr_on_every_seed():
    import copy

    from optforge.evaluators import baselines

    data = copy.deepcopy(baselines.load("smoke"))
    before = {t: len(v["adamw"]["runs"]) for t, v in data["tasks"].items()}
    out = baselines.add_weight_decay(data, "smoke", (0.1,), workers=1)
    assert out["weight_decays"] == [0.0, 0.1] and out["cost"]["weight_decay"][-1]["runs"] > 0
    for name, t in out["tasks"].items():
        added = [r for r in t["adamw"]["runs"] if baselines.run_wd(r) > 0]
        assert len(t["adamw"]["runs"]) == before[name] + len(t["adamw"]["chosen"])
        assert {(str(r["horizon"]), r["h"]) for r in added} == set(t["adamw"]["chosen"].items())
        assert all(sorted(map(int, r["val"])) == data["seeds"] for r in added)
    again = baselines.add_weight_decay(out, "smoke", (0.1,), workers=1)  # runs only what is missing: nothing
    assert all(len(t["adamw"]["runs"]) == before[n] + len(t["adamw"]["chosen"]) for n, t in again["tasks"].items())
    assert len(again["cost"]["weight_decay"]) == 1


def test_tuning_weight_decay_needs_adamw_weight_decay_runs(smoke_payload):
    from optforge.evaluators import wd_grid_for
    from optforge.evaluators.baselines import BaselineError

    req = EvalRequest(seeds.source("adamw"), "heldout", suite="smoke", baselines=smoke_payload, tune_wd=True)
    bare = dict(smoke_payload, weight_decays=None)
    with pytest.raises(BaselineError, match="--add-wd"):
        evaluate(EvalRequest(req.source, req.stage, suite="smoke", baselines=bare, tune_wd=True))
    assert wd_grid_for(bare, tune_wd=False, stage="train", suite="smoke") == ()


def test_rule_that_fails_to_load_in_the_sandbox_is_invalid(smoke_payload):
    source = seeds.source("adamw") + "\nBROKEN = 1 / 0\n"  # passes every static check, fails on load
    r = evaluate(EvalRequest(source, "smoke", suite="smoke", baselines=smoke_payload))
    assert r.status is Status.INVALID
    assert "ZeroDivisionError" in (r.feedback + str(r.artifacts.get("exception")))


def test_step_time_ratio_is_measured_side_by_side_in_the_job():
    from optforge.evaluators.job import step_seconds_pair
    from optforge.evaluators.tasks import get_suite

    task = get_suite("smoke").tasks[0]
    rule_s, adamw_s = step_seconds_pair(task, 0, seeds.load("adamw"))
    assert rule_s > 0 and adamw_s > 0
    # a rule that raises on the timing gradients gives no ratio rather than a made-up one
    broken = seeds.load("adamw").with_hparams()
    object.__setattr__(broken, "update", lambda p, g, state, ctx: (_ for _ in ()).throw(RuntimeError("boom")))
    assert step_seconds_pair(task, 0, broken) == (0.0, 0.0)


def test_evaluation_reports_a_step_time_ratio(adamw_smoke):
    ratio = adamw_smoke.metrics["step_time_ratio"]
    assert ratio is not None and math.isfinite(ratio) and ratio > 0
